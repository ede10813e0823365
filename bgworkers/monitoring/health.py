"""Liveness and readiness, for Kubernetes probes, compose healthchecks and ``bgworkers health``.

``/healthz`` answers 200 while the process serves requests (alive). ``/readyz`` answers 200
only when RabbitMQ accepts an AMQP connection and the database answers ``SELECT 1``, else 503;
the body says which check failed and why. The checks run in the background every few
seconds, so frequent probes neither hammer the services nor hang when one of them does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text

from bgworkers.db import get_engine
from bgworkers.diagnosis import database_problem, probe_broker_problem, schema_problem
from bgworkers.logs import redact_text
from bgworkers.monitoring.reading import BackgroundReading
from bgworkers.settings import Settings


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def check_broker(settings: Settings) -> CheckResult:
    problem = probe_broker_problem(settings.broker_url.get_secret_value(), timeout_s=3.0)
    return CheckResult("rabbitmq", problem is None, problem.message if problem else "reachable")


def check_database(settings: Settings, *, schema: bool = False) -> CheckResult:
    """``SELECT 1``; with ``schema``, also that the schema is migrated (for a person)."""
    url = settings.database_url.get_secret_value()
    try:
        engine = get_engine(settings)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        problem = schema_problem(engine) if schema else None
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; the text says why
        known = database_problem(exc, url)
        detail = known.message if known else redact_text(f"{type(exc).__name__}: {exc}")[:300]
        return CheckResult("database", False, detail)
    if problem is not None:
        return CheckResult("database", False, problem.message)
    return CheckResult("database", True, "reachable")


class Readiness:
    """The checks, run by a background thread every ``cache_s`` seconds.

    A probe gets the latest results at once, however slow RabbitMQ or the database are; only
    the very first probe waits for the first run.
    """

    def __init__(
        self, checks: list[Callable[[], CheckResult]], *, cache_s: float = 5.0, start: bool = True
    ) -> None:
        self._checks = checks
        self._first = threading.Lock()
        self._reading: BackgroundReading[list[CheckResult]] = BackgroundReading(
            "readiness", self._run, initial=[], interval_s=cache_s, start=start
        )

    def _run(self) -> list[CheckResult]:
        return [check() for check in self._checks]

    def results(self) -> list[CheckResult]:
        results, last_read, _ = self._reading.snapshot()
        if not last_read:
            with self._first:
                if not self._reading.snapshot()[1]:
                    self._reading.refresh()
            results = self._reading.snapshot()[0]
        return list(results)


def readiness_for(settings: Settings) -> Readiness:
    return Readiness([lambda: check_broker(settings), lambda: check_database(settings)])
