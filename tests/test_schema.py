"""The migrations build exactly the tables the models declare, on SQLite and PostgreSQL."""

import warnings

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SAWarning
from sqlmodel import SQLModel

import bgworkers.db.models
from bgworkers import migrations


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
        differences = compare_metadata(context, SQLModel.metadata)
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
    from pathlib import Path

    from bgworkers.db.models import TABLE_MODULES

    root = Path(bgworkers.db.models.__file__).resolve().parents[2]
    declaring = {
        ".".join(path.relative_to(root).with_suffix("").parts)
        for path in (root / "bgworkers").rglob("*.py")
        if "table=True" in path.read_text() and "migrations" not in path.parts
    }
    assert declaring - {"bgworkers.db.models"} == set(TABLE_MODULES)
