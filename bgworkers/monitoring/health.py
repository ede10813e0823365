"""Liveness and readiness, for Kubernetes probes, compose healthchecks and ``bgworkers health``.

What ``/healthz`` and ``/readyz`` answer: docs/monitoring.md, "Endpoints". The checks run in
the background every ``BGW_READINESS_INTERVAL_S`` seconds, so frequent probes neither hammer
the services nor hang when one of them does.

Why each check has a deadline of its own (``BGW_READINESS_TIMEOUT_S``): a service that stops
answering without closing its connections (a partition, a frozen host) never raises; a check
waiting on it would leave the last "ok" in place, and a probe would say ready for as long as
it hangs. So each check runs on a thread of its own (at most one stuck thread per check).
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from bgworkers.brokers.broker_nodes import probe_broker_problem
from bgworkers.db.engine import get_engine
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.loggers import redact_text
from bgworkers.metrics.reading import BackgroundReading
from bgworkers.processes.diagnosis import database_problem
from bgworkers.settings import Settings


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def check_broker(settings: Settings) -> CheckResult:
    url = settings.broker_url.get_secret_value()
    problem = probe_broker_problem(url, timeout_s=settings.readiness_timeout_s)
    return CheckResult("rabbitmq", problem is None, problem.message if problem else "reachable")


@functools.cache  # one per database and deadline, made at the first check
def probe_engine(url: str, dialect: str, timeout_s: float) -> Engine:
    """An engine on ``url``'s database for checks: no pool, bounded connect and statements."""
    if dialect == "sqlite":
        args: dict[str, object] = {"timeout": timeout_s, "check_same_thread": False}
    else:  # libpq's connect_timeout is whole seconds (at least 2)
        args = {"connect_timeout": max(2, math.ceil(timeout_s))}
    return create_engine(url, poolclass=NullPool, connect_args=args)


def check_database(settings: Settings, *, schema: bool = False) -> CheckResult:
    """``SELECT 1``, on a connection of its own (no pooled one that may be stuck), with a
    connect timeout and on PostgreSQL a ``statement_timeout``; with ``schema``, also that the
    schema is migrated (for a person)."""
    timeout = settings.readiness_timeout_s
    url = settings.database_url.get_secret_value()
    try:
        engine = get_engine(settings)
        url_with_password = engine.url.render_as_string(hide_password=False)
        probe = probe_engine(url_with_password, engine.dialect.name, timeout)
        with probe.connect() as connection:
            if probe.dialect.name == "postgresql":  # a server that is slow, not gone
                milliseconds = int(timeout * 1000)
                connection.execute(text(f"SET LOCAL statement_timeout = {milliseconds}"))
            connection.execute(text("SELECT 1"))
        # The process's own engine (with whatever its owner configured, e.g. a search_path);
        # a hang here is bounded by the caller's deadline (DeadlineCheck).
        problem = None
        if schema:
            from bgworkers.migrations import schema_problem  # alembic: when asked

            problem = schema_problem(engine)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; the text says why
        known = database_problem(exc, url)
        detail = known.message if known else redact_text(failure_reason(exc))[:300]
        return CheckResult("database", False, detail)
    return CheckResult("database", problem is None, problem.message if problem else "reachable")


class DeadlineCheck:
    """Runs a check on a thread of its own; a check that has not answered by its deadline is
    a failure ("no answer within N s"), and is not started again while it still hangs.

    Why an answer is judged by when it came, not by whether it is there when looked at: the
    checks' own timeouts (pika's, libpq's) may equal the deadline, and on a loaded machine the
    thread reporting them can finish after the deadline but before :meth:`wait` looks. Such an
    answer came too late all the same; taking it would make the report depend on scheduling
    ("RabbitMQ does not answer ..." one time, "no answer within 2 s" the next).
    """

    def __init__(self, name: str, check: Callable[[], CheckResult], *, timeout_s: float) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self._check = check
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._result: CheckResult | None = None
        self._answered = 0.0

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return  # the previous run still hangs: wait for it, do not pile up threads
            self._result = None
            self._started = time.monotonic()
            self._thread = threading.Thread(
                target=self._run, name=f"check-{self.name}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        try:
            result = self._check()
        except Exception as exc:  # noqa: BLE001 - a check that raises has failed; say why
            result = CheckResult(self.name, False, redact_text(failure_reason(exc)))
        with self._lock:
            self._result = result
            self._answered = time.monotonic()

    def wait(self) -> CheckResult:
        """The result, waiting at most until the deadline of the run in progress."""
        thread = self._thread
        if thread is not None:
            thread.join(max(self._started + self.timeout_s - time.monotonic(), 0))
        with self._lock:
            if self._result is not None and self._answered <= self._started + self.timeout_s:
                return self._result
            hanging = self._result is None
            waited = time.monotonic() - self._started
        detail = f"no answer within {self.timeout_s:g} s"
        if hanging and waited > self.timeout_s + 1:  # still hanging since an earlier interval
            detail += f" (still waiting, for {waited:.0f} s)"
        return CheckResult(self.name, False, detail)


def run_checks(checks: Sequence[DeadlineCheck]) -> list[CheckResult]:
    """All checks at once; each bounded by its deadline, so the whole by the longest one."""
    for check in checks:
        check.start()
    return [check.wait() for check in checks]


class Readiness(BackgroundReading[list[CheckResult]]):
    """The checks, run by a background thread every ``cache_s`` seconds.

    A probe gets the latest results at once, however slow RabbitMQ or the database are; only
    the very first probe waits for the first run (at most one deadline).
    """

    def __init__(
        self, checks: Sequence[DeadlineCheck], *, cache_s: float = 5.0, start: bool = True
    ) -> None:
        self._first = threading.Lock()
        run = functools.partial(run_checks, list(checks))
        super().__init__("readiness", run, initial=[], interval_s=cache_s, start=start)

    def results(self) -> list[CheckResult]:
        results, last_read, _ = self.snapshot()
        if not last_read:
            with self._first:
                if not self.snapshot()[1]:
                    self.refresh()
            results = self.snapshot()[0]
        return list(results)


def deadline_checks(settings: Settings, *, schema: bool = False) -> list[DeadlineCheck]:
    """The broker and database checks, each bounded by ``BGW_READINESS_TIMEOUT_S``."""
    timeout = settings.readiness_timeout_s
    return [
        DeadlineCheck("rabbitmq", lambda: check_broker(settings), timeout_s=timeout),
        DeadlineCheck(
            "database", lambda: check_database(settings, schema=schema), timeout_s=timeout
        ),
    ]


def readiness_for(settings: Settings) -> Readiness:
    return Readiness(deadline_checks(settings), cache_s=settings.readiness_interval_s)
