"""Worker processes refuse to start on a database whose schema is missing or outdated.

Why: a worker on an unmigrated database failed every scheduled message in a middleware
("no such table") and dead-lettered work that would have run fine after ``bgworkers
migrate``. Checked once per worker process at boot (``process_boot``, before any consumer
starts): one line naming the fix on stderr, then exit code 2, which dramatiq's CLI passes on
and which ``bgworkers run`` and the deploy files treat as "a restart will not help". A
database that does not answer exits 1 instead (a restart later may work).
"""

from __future__ import annotations

import sys

import dramatiq
from dramatiq.middleware import Middleware

from bgworkers.diagnosis import EXIT_UNAVAILABLE, Problem, database_problem, schema_problem


class SchemaGate(Middleware):
    """Stops a ``dramatiq bgworkers`` worker process at boot if the schema is not current."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        from bgworkers.boot import operator_command

        if operator_command() != "dramatiq":
            return  # emitted in-process (tests, an application): not a worker process
        from bgworkers.db import get_engine
        from bgworkers.settings import get_settings

        settings = get_settings()
        try:
            problem = schema_problem(get_engine(settings))
        except Exception as exc:  # noqa: BLE001 - whatever the database says, the worker stops
            url = settings.database_url.get_secret_value()
            problem = database_problem(exc, url) or Problem(
                "database_unreachable", EXIT_UNAVAILABLE, f"the database failed: {exc!r}"[:300]
            )
        if problem is not None:
            # stderr of the process as started: dramatiq redirects sys.stderr to its log pipe.
            err = sys.__stderr__ or sys.stderr
            print(f"bgworkers: worker not started: {problem.message}", file=err, flush=True)
            raise SystemExit(problem.exit_code)
