"""Liveness and readiness, for Kubernetes probes, compose healthchecks and ``bgworkers health``.

``/healthz`` answers 200 while the process serves requests (alive). ``/readyz`` answers 200
only when RabbitMQ accepts an AMQP connection and the database answers ``SELECT 1``, else 503;
the body says which check failed and why. Results are cached for a few seconds so that
frequent probes do not hammer either service.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text

from bgworkers.db import get_engine
from bgworkers.logs import redact_text
from bgworkers.middleware.connectivity import probe_broker
from bgworkers.settings import Settings


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def check_broker(settings: Settings) -> CheckResult:
    error = probe_broker(settings.broker_url.get_secret_value(), timeout_s=3.0)
    return CheckResult("rabbitmq", error is None, redact_text(error) if error else "reachable")


def check_database(settings: Settings) -> CheckResult:
    try:
        with get_engine(settings).connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; the text says why
        return CheckResult("database", False, redact_text(f"{type(exc).__name__}: {exc}")[:300])
    return CheckResult("database", True, "reachable")


class Readiness:
    """Runs the checks, at most once per ``cache_s`` seconds."""

    def __init__(self, checks: list[Callable[[], CheckResult]], *, cache_s: float = 5.0) -> None:
        self._checks = checks
        self._cache_s = cache_s
        self._lock = threading.Lock()
        self._at = 0.0
        self._results: list[CheckResult] = []

    def results(self) -> list[CheckResult]:
        with self._lock:
            if time.monotonic() - self._at > self._cache_s or not self._results:
                self._results = [check() for check in self._checks]
                self._at = time.monotonic()
            return list(self._results)


def readiness_for(settings: Settings) -> Readiness:
    return Readiness([lambda: check_broker(settings), lambda: check_database(settings)])
