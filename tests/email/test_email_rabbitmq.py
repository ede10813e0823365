"""The email actors through the real RabbitMQ and a worker, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.db.engine import session_scope, utcnow
from bgworkers.email.actors import process_email_queue, send_email
from bgworkers.email.api import enqueue_email
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.outbox import add_email
from tests.platform_helpers import wait_for

pytestmark = pytest.mark.integration


def wait_for_sent(engine: Engine, email_id: int) -> None:
    wait_for(
        lambda: status_of(engine, email_id).status == EmailStatus.SENT,
        timeout_s=30,
        what=f"email {email_id} to be marked sent",
    )


def status_of(engine: Engine, email_id: int) -> OutboxEmail:
    with Session(engine) as session:
        row = session.get(OutboxEmail, email_id)
        assert row is not None
        return row


def queue_email(key: str = "welcome") -> int:
    with session_scope() as session:
        row = enqueue_email(
            session=session,
            recipient="ada@example.org",
            subject="Welcome",
            text="Hello Ada\n",
            html="<p>Hello Ada</p>",
            idempotency_key=key,
        )
        session.flush()
        assert row.id is not None
        return row.id


def test_enqueued_email_is_delivered(db_engine, rabbit_worker, app_broker, app_mailer, smtp_server):  # type: ignore[no-untyped-def]
    email_id = queue_email()
    [message] = smtp_server.handler.wait_for(1)
    assert message["Subject"] == "Welcome"
    assert message.get_body(("html",)).get_content() == "<p>Hello Ada</p>\n"
    wait_for_sent(db_engine, email_id)


def test_duplicated_messages_deliver_once(
    db_engine, rabbit_worker, app_broker, app_mailer, smtp_server, registry
):  # type: ignore[no-untyped-def]
    email_id = queue_email()
    assert queue_email() == email_id  # the same key again: same row, no new message
    for _ in range(3):  # RabbitMQ redelivering the message
        send_email.send(email_id)
    app_broker.join("email", timeout=30_000)
    wait_for_sent(db_engine, email_id)
    wait_for(
        lambda: (registry.get_sample_value("bgworkers_email_claims_skipped_total") or 0) == 3,
        timeout_s=30,
        what="the three duplicates' claims to be skipped",
    )
    assert len(smtp_server.handler.received) == 1
    assert status_of(db_engine, email_id).attempts == 1


def test_busy_server_leads_to_retries_then_delivery(
    db_engine, rabbit_worker, app_broker, app_mailer, smtp_server, registry
):  # type: ignore[no-untyped-def]
    smtp_server.handler.data_replies.extend(
        ["421 4.3.2 Service not available", "450 4.2.1 Mailbox busy"]
    )
    email_id = queue_email()
    wait_for(
        lambda: status_of(db_engine, email_id).status == EmailStatus.SENT,
        timeout_s=60,
        what="the email to be sent after two deferrals",
    )
    row = status_of(db_engine, email_id)
    assert row.attempts == 3
    assert row.last_error == "450 4.2.1 Mailbox busy"  # the last deferral stays for the record
    assert len(smtp_server.handler.received) == 1
    labels = {"queue": "email", "actor": "send_email"}
    assert registry.get_sample_value("bgworkers_messages_retried_total", labels) == 2


def test_rejected_email_fails_with_the_reply_and_is_not_retried(
    db_engine, rabbit_worker, app_broker, app_mailer, smtp_server, registry
):  # type: ignore[no-untyped-def]
    smtp_server.handler.rcpt_replies.append("550 5.1.1 <ada@example.org>: Recipient unknown")
    email_id = queue_email()
    wait_for(
        lambda: status_of(db_engine, email_id).status == EmailStatus.FAILED,
        timeout_s=30,
        what="the email to be marked failed",
    )
    app_broker.join("email", timeout=30_000)
    row = status_of(db_engine, email_id)
    assert row.last_error == "550 5.1.1 <ada@example.org>: Recipient unknown"
    assert row.attempts == 1
    labels = {"queue": "email", "actor": "send_email"}
    wait_for(
        lambda: registry.get_sample_value("bgworkers_messages_processed_total", labels) == 1,
        timeout_s=30,
        what="the message to be counted as processed",
    )
    assert registry.get_sample_value("bgworkers_messages_retried_total", labels) == 0
    assert smtp_server.handler.received == []


def test_sweep_sends_emails_whose_message_was_lost(
    db_engine, rabbit_worker, app_broker, app_mailer, smtp_server
):  # type: ignore[no-untyped-def]
    written = utcnow() - timedelta(minutes=11)
    ids = []
    with session_scope() as session:  # written without a message, as if the publish was lost
        for n in range(3):
            row, _ = add_email(
                session=session,
                recipient=f"user{n}@example.org",
                subject="Lost",
                text="x",
                html=None,
                idempotency_key=f"lost-{n}",
                now=written,
            )
            ids.append(row.id)
    process_email_queue.send()
    process_email_queue.send()  # overlapping runs
    assert len(smtp_server.handler.wait_for(3)) == 3
    for email_id in ids:
        wait_for_sent(db_engine, email_id)
    app_broker.join("email", timeout=30_000)
    assert sorted(m["To"] for m in smtp_server.handler.received) == [
        "user0@example.org",
        "user1@example.org",
        "user2@example.org",
    ]


def test_emails_queued_in_one_transaction_leave_in_pages_each_once(
    db_engine, rabbit_worker, app_broker, app_mailer, smtp_server, registry
):  # type: ignore[no-untyped-def]
    smtp_server.handler.rcpt_by_address["poison@example.org"] = "550 5.1.1 No such user"
    recipients = [f"user{n}@example.org" for n in range(60)]
    recipients[7] = "poison@example.org"
    with session_scope() as session:
        for n, recipient in enumerate(recipients):
            enqueue_email(session=session, recipient=recipient, subject=f"Invoice {n}",
                          text="Hello\n", idempotency_key=f"invoice-{n}")  # fmt: skip
    assert len(smtp_server.handler.wait_for(59, timeout=60)) == 59
    app_broker.join("email", timeout=30_000)
    received = [m["To"] for m in smtp_server.handler.received]
    assert sorted(received) == sorted(r for r in recipients if r != "poison@example.org")
    labels = {"queue": "email", "actor": "send_email_page"}
    wait_for(
        lambda: registry.get_sample_value("bgworkers_messages_processed_total", labels) == 2,
        timeout_s=30,
        what="two page messages (50 and 10 emails) to be processed",
    )
    with Session(db_engine) as session:
        rows = session.exec(select(OutboxEmail)).all()
    assert {(r.recipient, r.status) for r in rows if r.status != EmailStatus.SENT} == {
        ("poison@example.org", EmailStatus.FAILED)
    }
