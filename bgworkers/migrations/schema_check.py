"""Whether the database's schema is the one this version ships: named as a
:class:`~bgworkers.processes.diagnosis.Problem` when it is not.

Here, beside the revisions it compares (:mod:`bgworkers.migrations`), so that the
diagnosis vocabulary (:mod:`bgworkers.processes.diagnosis`) needs no migration code.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from bgworkers import migrations
from bgworkers.processes.diagnosis import (
    EXIT_CONFIGURATION,
    Problem,
    SchemaNotReady,
    database_place,
    schema_missing,
)


def schema_problem(engine: Engine) -> Problem | None:
    """None when the database is at every head of this version's migrations.

    Raises the database's own error (e.g. ``OperationalError``) when it does not answer.
    """
    url = engine.url.render_as_string(hide_password=True)
    current = migrations.current_revisions(engine)
    if not current:
        return schema_missing(url)
    pending = migrations.pending_revisions(engine)
    unknown = current - migrations.known_revisions()
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
