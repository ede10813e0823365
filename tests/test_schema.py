"""The migrations build exactly the tables the models declare, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import bgworkers.db.models
from bgworkers import migrations


def test_migrations_match_models(db_engine: Engine) -> None:
    with db_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


def test_migrations_run_twice_and_downgrade_to_base(sqlite_engine: Engine) -> None:
    migrations.upgrade(sqlite_engine)  # second run is a no-op
    migrations.downgrade("base", sqlite_engine)
    with sqlite_engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert context.get_current_heads() == ()
    migrations.upgrade(sqlite_engine)


def test_every_table_module_is_listed() -> None:
    from pathlib import Path

    from bgworkers.db.models import TABLE_MODULES

    root = Path(bgworkers.db.models.__file__).resolve().parents[2]
    declaring = {
        ".".join(path.relative_to(root).with_suffix("").parts)
        for path in (root / "bgworkers").rglob("*.py")
        if "table=True" in path.read_text() and "migrations" not in path.parts
    }
    assert declaring - {"bgworkers.db.models"} == set(TABLE_MODULES)
