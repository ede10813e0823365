"""The migrations build exactly the tables the models declare, on SQLite and PostgreSQL."""

import subprocess
import sys
import warnings
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SAWarning

import bgworkers
from bgworkers import migrations
from bgworkers.db.tables import every_table
from bgworkers.stack.tables import TABLE_MODULES


def test_migrations_match_models(db_engine: Engine) -> None:
    with warnings.catch_warnings(), db_engine.connect() as conn:
        if db_engine.dialect.name == "sqlite":
            # SQLAlchemy cannot reflect an expression index from SQLite, and alembic then
            # leaves the model's one out of the comparison: each says so with a warning (an
            # error here). Only those two, only on SQLite; PostgreSQL reflects and compares
            # it, and test_outbox_recipient_index_exists_after_upgrade checks it on both.
            warnings.filterwarnings(
                "ignore", "Skipped unsupported reflection of expression-based index", SAWarning
            )
            warnings.filterwarnings(
                "ignore", "autogenerate skipping metadata-specified expression-based index"
            )
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, every_table())
    assert differences == []


def test_outbox_recipient_index_exists_after_upgrade(db_engine: Engine) -> None:
    """The expression index the comparison leaves out on SQLite is there all the same."""
    if db_engine.dialect.name == "sqlite":
        with db_engine.connect() as conn:
            sql = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'ix_email_outbox_recipient_lower'"
            ).scalar_one()
        assert "lower(recipient)" in sql
    else:
        names = {index["name"] for index in inspect(db_engine).get_indexes("email_outbox")}
        assert "ix_email_outbox_recipient_lower" in names


def test_migrations_run_twice_and_downgrade_to_base(sqlite_engine: Engine) -> None:
    migrations.upgrade(sqlite_engine)  # second run is a no-op
    migrations.downgrade("base", sqlite_engine)
    with sqlite_engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert context.get_current_heads() == ()
    migrations.upgrade(sqlite_engine)


def test_every_table_module_is_listed() -> None:
    root = Path(bgworkers.__file__).resolve().parents[1]
    declaring = {
        ".".join(path.relative_to(root).with_suffix("").parts)
        for path in (root / "bgworkers").rglob("*.py")
        if "table=True" in path.read_text() and "migrations" not in path.parts
    }
    assert declaring == {module.__name__ for module in TABLE_MODULES}


def test_alembic_environment_registers_every_table(tmp_path: Path) -> None:
    """alembic's environment gets every table itself, as when alembic's own command line runs
    it: in a process that imported no model, a migration leaves ``SQLModel.metadata`` knowing
    every table it created (with an empty metadata an autogenerate would propose dropping them
    all)."""
    script = (
        "import sys\n"
        "from sqlalchemy import inspect\n"
        "from sqlmodel import SQLModel\n"
        "from bgworkers import migrations\n"
        "from bgworkers.db.engine import make_engine\n"
        "assert not SQLModel.metadata.tables, sorted(SQLModel.metadata.tables)\n"
        "engine = make_engine(sys.argv[1])\n"
        "migrations.upgrade(engine)\n"
        "created = set(inspect(engine).get_table_names()) - {'alembic_version'}\n"
        "assert set(SQLModel.metadata.tables) == created, created ^ set(SQLModel.metadata.tables)\n"
    )
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = subprocess.run(
        [sys.executable, "-c", script, url], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_every_table_loads_the_table_modules_in_a_fresh_process() -> None:
    """What reads the whole schema (the backup, a restore from Python, the optimisation) gets
    every table with no broker built and no migration run first."""
    script = (
        "import sys\n"
        "from bgworkers.db.tables import every_table\n"
        "every_table()\n"
        "print(' '.join(name for name in sys.modules if name.startswith('bgworkers.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert {module.__name__ for module in TABLE_MODULES} <= set(result.stdout.split())
