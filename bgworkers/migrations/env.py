"""alembic environment: runs migrations on the engine handed over by :mod:`bgworkers.migrations`.

alembic runs this script (``bgworkers migrate`` or its own command line) and nothing imports
it: an entry point, so it may name the composition root's list of every table.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import bgworkers.stack.tables  # noqa: F401 - registers every table on SQLModel.metadata
from bgworkers.db.engine import get_engine

engine = context.config.attributes.get("engine") or get_engine()

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
