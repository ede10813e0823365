"""Schema migrations (alembic). Run them with ``bgworkers migrate``.

Each domain owns a branch of revisions rooted at the platform's first revision
(``down_revision = "0001_platform"``, ``branch_labels = ("<domain>",)``), so domains evolve
their tables independently; ``bgworkers migrate`` upgrades every head. :func:`schema_problem`
says whether a database's schema is the one this version ships (the worker's boot gate,
health), as a :class:`~bgworkers.processes.diagnosis.Problem`: here, beside the revisions it
compares, so that the diagnosis vocabulary needs no migration code.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from bgworkers.db.engine import get_engine
from bgworkers.processes.diagnosis import (
    EXIT_CONFIGURATION,
    Problem,
    SchemaNotReady,
    database_place,
    schema_missing,
)


def alembic_config(engine: Engine | None = None) -> Config:
    """alembic's configuration; ``env.py`` migrates ``engine`` (default: this process's)."""
    config = Config()
    config.set_main_option("script_location", "bgworkers:migrations")
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine | None = None) -> list[str]:
    """Bring the schema up to every head; safe to run on every start (no-op when current).

    Returns the revisions applied, oldest first (empty when the schema was already current),
    so ``bgworkers migrate`` can say what it did.
    """
    engine = engine or get_engine()
    before = applied_revisions(engine)
    command.upgrade(alembic_config(engine), "heads")
    return [rev for rev in _ordered_revisions() if rev not in before]


def downgrade(revision: str, engine: Engine | None = None) -> None:
    command.downgrade(alembic_config(engine), revision)


def known_revisions() -> set[str]:
    """Every revision this version of bgworkers ships."""
    return set(_ordered_revisions())


def current_revisions(engine: Engine) -> set[str]:
    """The heads recorded in the database's ``alembic_version`` (empty: never migrated).

    Raises SQLAlchemy's ``OperationalError`` when the database does not answer.
    """
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def applied_revisions(engine: Engine) -> set[str]:
    """Every revision at or below the database's current heads."""
    current = current_revisions(engine)
    if not current:
        return set()
    scripts = ScriptDirectory.from_config(alembic_config())
    return {rev.revision for rev in scripts.iterate_revisions(tuple(current), "base")}


def pending_revisions(engine: Engine) -> list[str]:
    """Revisions of this version not yet applied to the database, oldest first."""
    done = applied_revisions(engine)
    return [rev for rev in _ordered_revisions() if rev not in done]


def _ordered_revisions() -> list[str]:
    # Revision ids start with their sequence number (0001_platform, 0002_...): sorted is
    # the order a person reads, and a valid order since a branch only adds later numbers.
    scripts = ScriptDirectory.from_config(alembic_config())
    return sorted(rev.revision for rev in scripts.walk_revisions())


def schema_problem(engine: Engine) -> Problem | None:
    """None when the database is at every head of this version's migrations.

    Raises the database's own error (e.g. ``OperationalError``) when it does not answer.
    """
    url = engine.url.render_as_string(hide_password=True)
    current = current_revisions(engine)
    if not current:
        return schema_missing(url)
    pending = pending_revisions(engine)
    unknown = current - known_revisions()
    if unknown:
        return Problem(
            "schema_newer",
            EXIT_CONFIGURATION,
            f"the database's schema is newer than this bgworkers ({', '.join(sorted(unknown))} "
            f"unknown here); upgrade bgworkers on this machine ({database_place(url)})",
        )
    if pending:
        return Problem(
            "schema_outdated",
            EXIT_CONFIGURATION,
            f"the database's schema is outdated ({len(pending)} migration(s) pending: "
            f"{', '.join(pending)}); run `bgworkers migrate`",
        )
    return None


def check_schema(engine: Engine) -> None:
    """Raise :class:`SchemaNotReady` unless the schema is current (see :func:`schema_problem`)."""
    problem = schema_problem(engine)
    if problem is not None:
        raise SchemaNotReady(problem)
