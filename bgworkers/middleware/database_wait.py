"""A worker group started while the database is away waits for it instead of exiting.

Why: a worker process that found no database at boot used to exit with code 1, so a
supervisor restarted the whole group in a loop (and systemd gives up after a few tries),
where the same group started without RabbitMQ simply waits. Now the schema gate
(:mod:`bgworkers.middleware.schema_gate`) lets such a worker boot; once it has booted, it is
paused (nothing is consumed), the group's ``/healthz`` answers 200 and ``/readyz`` 503 (its
database check fails), and this waiter probes the database every few seconds, logging one line
a minute named by the condition with the password-free URL and the fix. When the database
answers, its schema is checked as at boot: current, the worker resumes; missing or outdated,
the process exits with code 2 after one line, as it would have at boot.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from dramatiq import Worker

from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.intervals import LogIntervalsByKey
from bgworkers.logs.loggers import get_logger, redact_text
from bgworkers.processes.diagnosis import EXIT_UNAVAILABLE, Problem, database_problem
from bgworkers.settings import Settings

log = get_logger(__name__)

#: Seconds between two probes, and between two lines about the same condition.
PROBE_INTERVAL_S = 5.0
LOG_INTERVAL_S = 60.0


def probe_database(settings: Settings) -> Problem | None:
    """None when the database answers ``SELECT 1`` and has the current schema; else why not."""
    from sqlalchemy import text

    from bgworkers.db.engine import get_engine
    from bgworkers.migrations import schema_problem

    url = settings.database_url.get_secret_value()
    try:
        engine = get_engine(settings)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return schema_problem(engine)
    except Exception as exc:  # noqa: BLE001 - any failure is the condition we report
        return database_problem(exc, url) or Problem(
            "database_unreachable", EXIT_UNAVAILABLE, f"the database failed: {failure_reason(exc)}"
        )


class DatabaseWait:
    """Pauses ``worker`` and resumes it once the database answers (a thread of its own)."""

    def __init__(
        self,
        worker: Worker,
        settings: Settings,
        *,
        probe: Callable[[Settings], Problem | None] = probe_database,
        interval_s: float = PROBE_INTERVAL_S,
        log_interval_s: float = LOG_INTERVAL_S,
        exit_process: Callable[[int], None] = os._exit,
    ) -> None:
        self._worker = worker
        self._settings = settings
        self._probe = probe
        self._interval_s = interval_s
        self._log_interval_s = log_interval_s
        self._exit = exit_process
        self.stop = threading.Event()
        self.resumed = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="database-wait", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        self._worker.pause()
        notices = LogIntervalsByKey(self._log_interval_s)
        while not self.stop.is_set():
            problem = self._probe(self._settings)
            if problem is None:
                log.info("database_reachable", database_url=self._url())
                self._worker.resume()
                self.resumed.set()
                return
            if problem.exit_code != EXIT_UNAVAILABLE:  # a schema to migrate: a restart won't do
                log.error(problem.condition, database_url=self._url(), hint=problem.message)
                for handler in logging.getLogger().handlers:
                    handler.flush()  # the line reaches the log before the process ends
                self._exit(problem.exit_code)
                return
            if notices.of(problem.condition).due():
                log.error(
                    problem.condition,
                    database_url=self._url(),
                    hint=f"{problem.message}. The worker waits for it and consumes nothing "
                    "meanwhile; messages wait in RabbitMQ.",
                )
            self.stop.wait(self._interval_s)

    def _url(self) -> str:
        return redact_text(self._settings.database_url.get_secret_value())
