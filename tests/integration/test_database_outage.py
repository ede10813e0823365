"""PostgreSQL stopped, crashed, or away at start: the workers stay quiet, wait, lose nothing.

Each test runs a PostgreSQL server of its own (:mod:`tests.integration.own_postgres`), a real
worker group (``dramatiq bgworkers``) and, in the outage test, the scheduler (``periodiq
bgworkers``), against the real RabbitMQ and an in-process SMTP server.

Under a steady stream of emails the server is stopped (``pg_ctl stop -m fast``) across a
minute boundary, so the scheduler's ticks of that minute meet it away, started, then crashed
(``-m immediate``) and started again. Afterwards every email has been delivered exactly once
(counted by Message-ID), nothing is dead-lettered (every XQ and the dead-letter index are
empty), the ticks that met the outage are counted as skipped or missed, and the logs hold
no traceback, no ERROR line and at most two warnings per condition (the rule: one line a
minute; a condition that clears and comes back may say so again).

An email whose claim was written just before the database went away stays claimed until
``BGW_EMAIL_SENDING_TIMEOUT_S`` has passed (that is what keeps a send that may still be in
progress from being repeated); the outbox sweep, which the scheduler sends every 5 minutes,
then delivers it. The test sends the sweep itself, and sets the shortest timeout allowed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from bgworkers import migrations
from bgworkers.console.models import DeadLetter
from bgworkers.db.engine import make_engine, session_scope, use_engine
from bgworkers.email.actors import process_email_queue
from bgworkers.email.api import enqueue_email
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.maintenance.models import SchedulerHeartbeat
from tests.email.helpers import ScriptedHandler
from tests.integration.own_postgres import OwnPostgres, server_binaries
from tests.platform_helpers import IN_CI, smtp_server, wait_for
from tests.service_processes import Processes, process_env, scrape

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
EMAILS = 60
#: Seconds between two emails of the application's stream.
STREAM_INTERVAL_S = 0.25
#: Seconds the server stays stopped, then crashed.
STOPPED_S = 6.0
CRASHED_S = 5.0


class SlowSmtpHandler(ScriptedHandler):
    """Takes 0.3 s to accept each email, so deliveries are in flight when the server goes."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.3)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp() -> Iterator[tuple[SlowSmtpHandler, int]]:
    handler = SlowSmtpHandler()
    with smtp_server(handler) as port:
        yield handler, port


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A migrated PostgreSQL of the test's own, running; removed afterwards."""
    binaries = server_binaries()
    if binaries is None:
        message = "no PostgreSQL server binaries (Debian package postgresql) to run one's own"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    server = OwnPostgres(binaries)
    try:
        server.start()
        engine = make_engine(server.url)
        migrations.upgrade(engine)
        engine.dispose()
        yield server
    finally:
        server.remove()


@pytest.fixture
def engine(own_postgres: OwnPostgres) -> Iterator[Engine]:
    """The test's own (the application's) engine on that server."""
    engine = make_engine(own_postgres.url)
    use_engine(engine)
    yield engine
    use_engine(None)
    engine.dispose()


@pytest.fixture
def system(
    tmp_path: Path,
    app_broker: dramatiq.Broker,
    rabbitmq_url: str,
    own_postgres: OwnPostgres,
    smtp: tuple[ScriptedHandler, int],
) -> Iterator[Processes]:
    """Worker group and scheduler, not started yet, configured for that server and SMTP."""
    env = process_env(
        tmp_path,
        broker_url=rabbitmq_url,
        database_url=own_postgres.url,
        BGW_SMTP_PORT=str(smtp[1]),
        BGW_SMTP_TIMEOUT_S="2",
        BGW_RETRY_MIN_BACKOFF_MS="500",
        BGW_EMAIL_SENDING_TIMEOUT_S="123",
        BGW_LOG_FORMAT="json",
    )
    processes = Processes(env, tmp_path)
    yield processes
    processes.stop_all()


def start_workers(system: Processes) -> None:
    system.start("worker", str(BIN / "dramatiq"), "bgworkers", "-p", "1", "-t", "4")


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


class EmailStream:
    """The application: one email every :data:`STREAM_INTERVAL_S` through the outbox.

    While the database is away the application's own call fails; it tries the same email
    again (same idempotency key) until the call succeeds, as a caller retrying would.
    """

    def __init__(self) -> None:
        self.refused = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for n in range(EMAILS):
            while True:
                try:
                    with session_scope() as session:
                        enqueue_email(
                            session=session,
                            recipient=f"user{n}@example.org",
                            subject=f"email {n}",
                            text="hello",
                            idempotency_key=f"outage-{n}",
                        )
                    break
                except OperationalError:
                    self.refused += 1
                    time.sleep(STREAM_INTERVAL_S)
            time.sleep(STREAM_INTERVAL_S)


def all_sent(engine: Engine) -> bool:
    """Whether every email is sent; if not, send the sweep (at most every 10 s)."""
    with Session(engine) as session:
        statuses = session.exec(select(OutboxEmail.status)).all()
    if len(statuses) == EMAILS and all(s == EmailStatus.SENT for s in statuses):
        return True
    now = time.monotonic()
    if now - _last_sweep[0] >= 10:
        _last_sweep[0] = now
        process_email_queue.send()
    return False


_last_sweep = [0.0]


def until_second(second: float) -> None:
    """Wait until the wall clock is ``second`` into a minute (the scheduler ticks at :00)."""
    now = datetime.now(UTC)
    wait = (second - now.second - now.microsecond / 1e6) % 60
    time.sleep(wait)


def log_lines(system: Processes, name: str) -> list[dict[str, Any]]:
    """The JSON lines of a process's output; a line that is not JSON fails the test."""
    text = (system.workdir / f"{name}.out").read_text() + (
        system.workdir / f"{name}.err"
    ).read_text()
    assert "Traceback" not in text, text[-5000:]
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def is_outcome_line(line: dict[str, Any]) -> bool:
    """A message's own outcome line: ours (canonical), or dramatiq's "Message X was skipped"."""
    event = str(line.get("event"))
    return event == "message_processed" or event.startswith("Message ")


def ticks_skipped_or_missed(system: Processes) -> float:
    samples = scrape(int(system.env["BGW_METRICS_PORT"]))
    return sum(
        value
        for (name, labels), value in samples.items()
        if (
            name == "bgworkers_schedule_skipped_ticks_total"
            and ("reason", "database_unavailable") in labels
        )
        or name == "bgworkers_schedule_missed_ticks_total"
    )


@pytest.mark.timeout(600)
def test_emails_are_delivered_once_through_a_stop_and_a_crash_of_the_database(
    system: Processes,
    own_postgres: OwnPostgres,
    engine: Engine,
    app_broker: dramatiq.Broker,
    smtp: tuple[ScriptedHandler, int],
) -> None:
    handler, _ = smtp
    start_workers(system)
    system.start("scheduler", str(BIN / "periodiq"), "bgworkers")
    wait_for(
        lambda: (
            b"Worker process is ready"
            in (system.workdir / "worker.err").read_bytes()
            + (system.workdir / "worker.out").read_bytes()
        ),
        timeout_s=60,
        what="the worker ready",
    )
    # The stop spans a minute boundary: the ticks of that minute meet the database away.
    until_second(52)
    stream = EmailStream()
    stream.thread.start()
    until_second(57)
    own_postgres.stop()
    time.sleep(STOPPED_S)
    own_postgres.start()
    time.sleep(3)
    own_postgres.crash()
    time.sleep(CRASHED_S)
    own_postgres.start()
    stream.thread.join(timeout=120)
    assert not stream.thread.is_alive()
    assert stream.refused > 0  # the application did see the database away
    wait_for(lambda: all_sent(engine), timeout_s=300, what="every email sent")
    wait_for(lambda: ticks_skipped_or_missed(system) >= 1, timeout_s=30, what="ticks counted")
    codes = system.stop_all()

    message_ids = Counter(str(message["Message-ID"]) for message in handler.received)
    subjects = {str(message["Subject"]) for message in handler.received}
    assert subjects == {f"email {n}" for n in range(EMAILS)}
    assert len(message_ids) == EMAILS and set(message_ids.values()) == {1}, (
        message_ids.most_common(3)  # each email once
    )
    with Session(engine) as session:
        assert session.exec(select(DeadLetter)).all() == []
    for queue in app_broker.get_declared_queues():
        assert app_broker.get_queue_message_counts(queue)[2] == 0, queue  # nothing in any XQ
    assert codes[0] == 0  # the worker group stopped gracefully (periodiq dies of SIGTERM)
    for name in ("worker", "scheduler"):
        lines = log_lines(system, name)
        errors = [line for line in lines if line.get("level") in {"error", "critical"}]
        assert errors == [], errors[:3]
        # One line a minute per condition (one worker process); the two outages lasted
        # seconds, and a condition that cleared in between (the relay's) may be said twice.
        # A message's own outcome line (a tick skipped) is one per message, by design.
        per_event = Counter(
            (line.get("event"), line.get("reading"))  # a metric reading is a condition of its own
            for line in lines
            if line.get("level") == "warning" and not is_outcome_line(line)
        )
        assert all(count <= 2 for count in per_event.values()), per_event.most_common(3)


def beats(engine: Engine) -> int:
    with Session(engine) as session:
        row = session.get(SchedulerHeartbeat, "scheduler")
        return row.beats if row else 0


def test_a_worker_group_started_without_its_database_waits_then_works(
    system: Processes, own_postgres: OwnPostgres, engine: Engine
) -> None:
    from bgworkers.maintenance.actors import heartbeat

    own_postgres.stop()
    start_workers(system)
    base = f"http://127.0.0.1:{system.env['BGW_METRICS_PORT']}"
    out = system.workdir / "worker.out"
    wait_for(lambda: status(f"{base}/healthz") == 200, timeout_s=60, what="/healthz 200")
    wait_for(lambda: status(f"{base}/readyz") == 503, timeout_s=30, what="/readyz 503")
    wait_for(lambda: b"database_unreachable" in out.read_bytes(), what="one line saying so")
    assert system.started[0][0].poll() is None, out.read_text()
    heartbeat.send()

    own_postgres.start()
    wait_for(lambda: beats(engine) == 1, timeout_s=60, what="the message processed")
    wait_for(lambda: status(f"{base}/readyz") == 200, timeout_s=30, what="/readyz 200")
    assert system.stop_all() == [0]
    lines = log_lines(system, "worker")
    assert [line["event"] for line in lines].count("database_unreachable") == 1, lines
    assert "database_reachable" in [line["event"] for line in lines]
