"""The urgent lane: an urgent email is not stuck behind a backlog of bulk email.

The routing is read from the message outbox; the ordering is proven through the real
RabbitMQ, a dramatiq worker consuming every queue and a real SMTP server (aiosmtpd).
"""

from __future__ import annotations

import time

import dramatiq
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers import queues
from bgworkers.db.engine import session_scope
from bgworkers.email.actors import send_email, send_urgent_email
from bgworkers.email.along import ALONG
from bgworkers.email.api import enqueue_email
from bgworkers.outbox.models import OutboxMessage
from tests.email.helpers import SmtpServer

BACKLOG = 500


def queue_rows(*keys: str) -> list[int]:
    """Email rows whose messages the test sends itself (as a backlog would have been)."""
    ids: list[int] = []
    with session_scope() as session:
        for key in keys:
            enqueue_email(
                session=session,
                recipient="ada@example.org",
                subject=key,
                text="Hello\n",
                idempotency_key=key,
                dispatch=ids.append,
            )
    return ids


def test_enqueue_email_routes_urgent_email_to_the_urgent_lane(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        enqueue_email(
            session=session,
            recipient="a@example.org",
            subject="s",
            text="t",
            idempotency_key="bulk",
        )
        enqueue_email(
            session=session,
            recipient="a@example.org",
            subject="s",
            text="t",
            idempotency_key="code",
            urgent=True,
        )
        session.commit()
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    # The urgent message is written at once, the bulk one when the transaction commits.
    assert sorted((r.actor, r.queue) for r in rows) == [
        ("send_email", queues.EMAIL),
        ("send_urgent_email", queues.URGENT),
    ]


def subjects(server: SmtpServer) -> list[str]:
    return [str(m["Subject"]) for m in list(server.handler.received)]


@pytest.mark.integration
def test_an_urgent_email_leaves_before_a_bulk_backlog_drains(
    postgres_engine: Engine,
    app_broker: dramatiq.Broker,
    app_mailer: object,
    smtp_server: SmtpServer,
) -> None:
    threads = 2
    backlog = queue_rows(*(f"notice:{n}" for n in range(BACKLOG)))
    [urgent] = queue_rows("reminder:1")
    for email_id in backlog:  # queued first: a run takes waiting emails along
        send_email.send(email_id)
    worker = dramatiq.Worker(app_broker, worker_timeout=100, worker_threads=threads)
    worker.start()
    try:
        smtp_server.handler.wait_for(1)  # the backlog is flowing: every consumer is up
        before = len(subjects(smtp_server))
        send_urgent_email.send(urgent)
        deadline = time.monotonic() + 60
        while "reminder:1" not in subjects(smtp_server):
            assert time.monotonic() < deadline, "the urgent email never left"
            time.sleep(0.01)
        seen = subjects(smtp_server)
    finally:
        worker.stop()
    overtaken_by = seen.index("reminder:1") - before
    # It waited for a worker thread, not for the backlog: only emails already being sent
    # (and those whose send started while the urgent message was on its way) went first;
    # a bulk run sends its own email and up to ALONG others.
    assert overtaken_by <= 2 * threads * (ALONG + 1), seen[before:]
    assert len(seen) < BACKLOG  # and the backlog was still there


def test_time_critical_actors_go_first_in_a_worker_that_consumes_both_lanes() -> None:
    from bgworkers.reminders.actors import check_due_reminders, fire_reminder

    for actor in (send_urgent_email, fire_reminder, check_due_reminders):
        assert actor.queue_name in queues.TIME_CRITICAL
        assert actor.priority == queues.URGENT_PRIORITY < send_email.priority
    assert send_email.queue_name == queues.EMAIL
