"""PostgreSQL stopped, then crashed, under a steady stream of emails: each delivered once.

The worker group reaches PostgreSQL through a TCP relay of the test's own, which the test
stops (connections closed, new ones refused, for 8 s) and later crashes (connections reset,
refused for 5 s) while the application keeps enqueuing emails through the outbox. Afterwards
every email has been delivered exactly once, nothing is dead-lettered, and the worker's log
holds no traceback.

An email whose claim was written just before the database went away stays claimed until
``BGW_EMAIL_SENDING_TIMEOUT_S`` has passed (that is what keeps a send that may still be in
progress from being repeated); the outbox sweep, which the scheduler sends every 5 minutes,
then delivers it. The test sends the sweep itself, and sets the shortest timeout allowed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

import bgworkers
from bgworkers.console.models import DeadLetter
from bgworkers.db.engine import session_scope
from bgworkers.email.actors import process_email_queue
from bgworkers.email.api import enqueue_email
from bgworkers.email.models import EmailStatus, OutboxEmail
from tests.email.helpers import ScriptedHandler
from tests.integration.tcp_relay import TcpRelay
from tests.platform_helpers import free_port, wait_for

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
EMAILS = 40


@pytest.fixture
def smtp() -> Iterator[tuple[ScriptedHandler, int]]:
    handler = ScriptedHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def queue_email(n: int) -> None:
    with session_scope() as session:  # the application: its own connection, not the relay
        enqueue_email(
            session=session,
            recipient=f"user{n}@example.org",
            subject=f"email {n}",
            text="hello",
            idempotency_key=f"outage-{n}",
        )


def swept_and_all_sent(engine: Engine) -> bool:
    """Whether every email is sent; if not, send the sweep (at most every 10 s)."""
    if all_sent(engine):
        return True
    now = time.monotonic()
    if now - _last_sweep[0] >= 10:
        _last_sweep[0] = now
        process_email_queue.send()
    return False


_last_sweep = [0.0]


def all_sent(engine: Engine) -> bool:
    with Session(engine) as session:
        statuses = session.exec(select(OutboxEmail.status)).all()
    return len(statuses) == EMAILS and all(s == EmailStatus.SENT for s in statuses)


@pytest.mark.timeout(600)
def test_emails_are_delivered_once_through_a_stop_and_a_crash_of_the_database(
    tmp_path: Path,
    rabbitmq_url: str,
    postgres_engine: Engine,
    smtp: tuple[ScriptedHandler, int],
) -> None:
    handler, smtp_port = smtp
    url = postgres_engine.url
    relay = TcpRelay((url.host or "127.0.0.1", url.port or 5432))
    relay.open()
    port = free_port()
    env = {
        **os.environ,
        "BGW_BROKER_URL": rabbitmq_url,
        "BGW_DATABASE_URL": url.set(host="127.0.0.1", port=relay.port).render_as_string(
            hide_password=False
        ),
        "BGW_DATA_DIR": str(tmp_path),
        "BGW_METRICS_PORT": str(port),
        "BGW_SMTP_PORT": str(smtp_port),
        "BGW_RETRY_MIN_BACKOFF_MS": "500",
        "BGW_SMTP_TIMEOUT_S": "2",
        "BGW_EMAIL_SENDING_TIMEOUT_S": "123",
        "BGW_LOG_FORMAT": "json",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    broker = bgworkers.broker
    for queue in broker.get_declared_queues():
        broker.flush(queue)
    out = tmp_path / "worker.out"
    with out.open("wb") as log:
        worker = subprocess.Popen(
            [str(BIN / "dramatiq"), "bgworkers", "-p", "1", "-t", "4"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: b"Worker process is ready" in out.read_bytes(), timeout_s=60)
        started = time.monotonic()
        events = [(4.0, relay.stop), (12.0, relay.open), (16.0, relay.crash), (21.0, relay.open)]
        for n in range(EMAILS):
            while events and time.monotonic() - started >= events[0][0]:
                events.pop(0)[1]()
            queue_email(n)
            time.sleep(0.6)
        for _, action in events:
            action()
        wait_for(lambda: swept_and_all_sent(postgres_engine), timeout_s=300, what="all sent")
    finally:
        relay.stop()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    subjects = Counter(str(message["Subject"]) for message in handler.received)
    assert sorted(subjects) == sorted(f"email {n}" for n in range(EMAILS))
    assert set(subjects.values()) == {1}, subjects.most_common(3)  # each once
    with Session(postgres_engine) as session:
        assert session.exec(select(DeadLetter)).all() == []
    for queue in broker.get_declared_queues():
        assert broker.get_queue_message_counts(queue)[2] == 0, queue  # nothing in any XQ
    text = out.read_text()
    assert "Traceback" not in text, text[-5000:]
