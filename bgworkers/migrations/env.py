"""alembic environment: runs migrations on the engine handed over by :mod:`bgworkers.migrations`."""

from __future__ import annotations

from alembic import context

from bgworkers.db.engine import get_engine
from bgworkers.db.tables import every_table

engine = context.config.attributes.get("engine") or get_engine()

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=every_table(),
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
