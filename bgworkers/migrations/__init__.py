"""Schema migrations (alembic). Run them with ``bgworkers migrate``.

Each domain owns a branch of revisions rooted at the platform's first revision
(``down_revision = "0001_platform"``, ``branch_labels = ("<domain>",)``), so domains evolve
their tables independently; ``bgworkers migrate`` upgrades every head.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from bgworkers.db import get_engine


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "bgworkers:migrations")
    config.attributes["engine"] = engine or get_engine()
    return config


def upgrade(engine: Engine | None = None, revision: str = "heads") -> None:
    """Bring the schema up to date; safe to run on every start (no-op when current)."""
    command.upgrade(alembic_config(engine), revision)


def downgrade(revision: str, engine: Engine | None = None) -> None:
    command.downgrade(alembic_config(engine), revision)
