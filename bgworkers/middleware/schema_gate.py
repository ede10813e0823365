"""Worker processes refuse to start on a database whose schema is missing or outdated.

Why: a worker on an unmigrated database failed every scheduled message in a middleware
("no such table") and dead-lettered work that would have run fine after ``bgworkers
migrate``. Checked once per worker process at boot (``process_boot``, before any consumer
starts): one line naming the fix on stderr, then exit code 2, which dramatiq's CLI passes on
and which ``bgworkers run`` and the deploy files treat as "a restart will not help". A
database that does not answer is waited for instead: the worker boots paused and resumes once
it answers (:mod:`bgworkers.middleware.database_wait`).

The check runs in a short-lived child process (``os.fork``; the worker process has started no
thread yet at ``process_boot``): it needs the migration tooling (alembic and the migration
scripts, about 10 MiB), which the worker itself never uses again. The child prints the line,
if any, and exits with the code; the worker process exits with the same code.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

import dramatiq
from dramatiq.middleware import Middleware

from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.middleware.database_wait import DatabaseWait
from bgworkers.processes.diagnosis import EXIT_UNAVAILABLE, Problem, database_problem


class SchemaGate(Middleware):
    """Stops a ``dramatiq bgworkers`` worker process at boot if the schema is not current;
    makes it wait, paused, while the database does not answer."""

    def __init__(self) -> None:
        self._database_away = False
        self._wait: DatabaseWait | None = None

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        code = _in_child(check_schema_or_say_why)
        self._database_away = code == EXIT_UNAVAILABLE
        if code and not self._database_away:
            raise SystemExit(code)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._database_away:
            from bgworkers.settings import get_settings

            self._wait = DatabaseWait(worker, get_settings())
            self._wait.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._wait is not None:
            self._wait.stop.set()


def check_schema_or_say_why() -> int:
    """0 when the schema is current; else print one line on stderr and return the exit code."""
    from bgworkers.db.engine import get_engine
    from bgworkers.settings import get_settings

    settings = get_settings()
    # The child runs before the worker's logging is set up (after-hooks run in reverse order):
    # alembic's own INFO lines ("setup plugin ...", "Context impl ...") would reach stderr.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from bgworkers.migrations import schema_problem  # alembic: in the child only

    try:
        engine = get_engine(settings)
        try:
            problem = schema_problem(engine)
        finally:
            engine.dispose()  # closed before the child exits, not dropped by the kernel
    except Exception as exc:  # noqa: BLE001 - whatever the database says, the worker stops
        url = settings.database_url.get_secret_value()
        problem = database_problem(exc, url) or Problem(
            "database_unreachable", EXIT_UNAVAILABLE, f"the database failed: {failure_reason(exc)}"
        )
    if problem is None or problem.exit_code == EXIT_UNAVAILABLE:
        return 0 if problem is None else EXIT_UNAVAILABLE  # waited for, logged once booted
    # stderr of the process as started: dramatiq redirects sys.stderr to its log pipe.
    err = sys.__stderr__ or sys.stderr
    print(f"bgworkers: worker not started: {problem.message}", file=err, flush=True)
    return problem.exit_code


def _in_child(check: Callable[[], int]) -> int:
    """``check()``'s result, computed in a forked child so its imports stay out of this process."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into the worker's code
        code = EXIT_UNAVAILABLE
        try:
            code = check()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else EXIT_UNAVAILABLE
