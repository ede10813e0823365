import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.email.api import enqueue_email
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.outbox import (
    REDISPATCH_AFTER,
    InvalidEmail,
    add_email,
    claim,
    deliver_email,
    message_id_for,
    sweep_outbox,
)
from bgworkers.email.smtp import SmtpTransientError
from bgworkers.outbox.models import OutboxMessage

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
SENDER = "Assistant <assistant@example.com>"
TIMEOUT_S = 600.0


def queue(engine: Engine, key: str = "k1", **fields: object) -> int:
    values: dict[str, object] = {
        "recipient": "ada@example.org",
        "subject": "Café at 10",
        "text": "See you there.\n",
        "html": "<p>See you <b>there</b>.</p>",
        "idempotency_key": key,
    }
    values.update(fields)
    sent: list[int] = []
    with Session(engine) as session:
        row = enqueue_email(session=session, now=NOW, dispatch=sent.append, **values)  # type: ignore[arg-type]
        email_id = row.id
        session.commit()
    assert email_id is not None and sent == [email_id]
    return email_id


def deliver(engine: Engine, email_id: int, mailer, now: datetime = NOW, max_attempts: int = 5):  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return deliver_email(
            email_id,
            session=session,
            mailer=mailer,
            clock=lambda: now,
            sender=SENDER,
            sending_timeout_s=TIMEOUT_S,
            max_attempts=max_attempts,
        )


def row_of(engine: Engine, email_id: int) -> OutboxEmail:
    with Session(engine) as session:
        row = session.get(OutboxEmail, email_id)
        assert row is not None
        return row


def test_delivers_with_headers_and_both_bodies(db_engine: Engine, smtp_server, registry) -> None:
    email_id = queue(db_engine)
    assert deliver(db_engine, email_id, smtp_server.mailer()) == "sent"
    [message] = smtp_server.handler.wait_for(1)
    assert smtp_server.handler.envelopes == [("assistant@example.com", ["ada@example.org"])]
    assert message["From"] == SENDER
    assert message["To"] == "ada@example.org"
    assert message["Subject"] == "Café at 10"
    assert message["Message-ID"] == message_id_for("k1", SENDER)
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] == "Wed, 25 Nov 2026 09:00:00 +0000"
    assert message.get_body(("plain",)).get_content() == "See you there.\n"
    assert message.get_body(("html",)).get_content() == "<p>See you <b>there</b>.</p>\n"
    row = row_of(db_engine, email_id)
    assert (row.status, row.attempts, row.sent_at) == (EmailStatus.SENT, 1, NOW)
    assert registry.get_sample_value("bgworkers_email_sent_total") == 1


def test_same_key_is_queued_once(db_engine: Engine) -> None:
    first = queue(db_engine)
    dispatched: list[int] = []
    with Session(db_engine) as session:
        again = enqueue_email(
            session=session,
            recipient="ada@example.org",
            subject="Other",
            text="x",
            idempotency_key="k1",
            dispatch=dispatched.append,
        )
        assert again.id == first
        session.commit()
        assert len(session.exec(select(OutboxEmail)).all()) == 1
    assert dispatched == []


def test_enqueue_writes_its_message_in_the_callers_transaction(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        enqueue_email(
            session=session,
            recipient="ada@example.org",
            subject="s",
            text="t",
            idempotency_key="rolled-back",
        )
        session.rollback()
    with Session(db_engine) as session:
        assert session.exec(select(OutboxEmail)).all() == []
        assert session.exec(select(OutboxMessage)).all() == []  # no message either
    with Session(db_engine) as session:
        row = enqueue_email(
            session=session,
            recipient="ada@example.org",
            subject="s",
            text="t",
            idempotency_key="c" * 200,  # the longest key: its message key is a digest
        )
        email_id = row.id
        session.commit()
    with Session(db_engine) as session:
        [message] = session.exec(select(OutboxMessage)).all()
    assert (message.actor, message.queue) == ("send_email", "email")
    assert json.loads(message.body)["args"] == [email_id]


def test_concurrent_insert_of_the_same_key_returns_the_winner(db_engine: Engine) -> None:
    """Two transactions add the same key at once: one row, both see it, one is "created"."""

    def add(session: Session) -> tuple[int | None, bool]:
        row, created = add_email(
            session=session,
            recipient="a@b.org",
            subject="s",
            text="t",
            html=None,
            idempotency_key="race",
            now=NOW,
        )
        return row.id, created

    results: list[tuple[int | None, bool]] = []
    with Session(db_engine) as first:
        winner = add(first)  # inserted, not yet committed
        with Session(db_engine) as second:
            thread = threading.Thread(target=lambda: results.append(add(second)))
            thread.start()
            thread.join(timeout=0.5)  # the second insert waits on the first's lock
            first.commit()
            thread.join(timeout=30)
            second.commit()
    assert winner[1] is True
    assert results == [(winner[0], False)]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"recipient": "not an address"}, "is not an email address"),
        ({"subject": "Hi\r\nBcc: victim@example.org"}, "line break"),
        ({"text": "  "}, "text body is empty"),
        ({"idempotency_key": ""}, "idempotency key"),
    ],
)
def test_bad_emails_are_refused(db_engine: Engine, fields: dict, problem: str) -> None:
    with pytest.raises(InvalidEmail, match=problem):
        queue(db_engine, **fields)


def test_transient_reply_requeues_then_succeeds(db_engine: Engine, smtp_server, registry) -> None:
    email_id = queue(db_engine)
    smtp_server.handler.data_replies.extend(["421 4.7.0 Try again later", "450 4.2.1 Busy"])
    mailer = smtp_server.mailer()
    for expected in ("421 4.7.0 Try again later", "450 4.2.1 Busy"):
        with pytest.raises(SmtpTransientError):
            deliver(db_engine, email_id, mailer)
        row = row_of(db_engine, email_id)
        assert (row.status, row.last_error) == (EmailStatus.QUEUED, expected)
        assert row.dispatch_after == NOW + REDISPATCH_AFTER
    assert deliver(db_engine, email_id, mailer) == "sent"
    assert len(smtp_server.handler.wait_for(1)) == 1
    assert row_of(db_engine, email_id).attempts == 3
    assert (
        registry.get_sample_value("bgworkers_email_send_errors_total", {"kind": "transient"}) == 2
    )


def test_sender_refusal_requeues_then_succeeds(db_engine: Engine, smtp_server) -> None:
    """A 530 to MAIL FROM (STARTTLS or login missing) is our configuration: keep the email."""
    email_id = queue(db_engine)
    smtp_server.handler.mail_replies.append("530 5.7.0 Must issue a STARTTLS command first")
    mailer = smtp_server.mailer()
    with pytest.raises(SmtpTransientError):
        deliver(db_engine, email_id, mailer)
    row = row_of(db_engine, email_id)
    assert (row.status, row.last_error) == (
        EmailStatus.QUEUED,
        "530 5.7.0 Must issue a STARTTLS command first",
    )
    assert deliver(db_engine, email_id, mailer) == "sent"
    assert len(smtp_server.handler.wait_for(1)) == 1
    mailer.close()


def test_sender_refusals_are_bounded_by_max_attempts(db_engine: Engine, smtp_server) -> None:
    email_id = queue(db_engine)
    smtp_server.handler.mail_replies.extend(["530 Authentication required"] * 2)
    with pytest.raises(SmtpTransientError):
        deliver(db_engine, email_id, smtp_server.mailer(), max_attempts=2)
    assert deliver(db_engine, email_id, smtp_server.mailer(), max_attempts=2) == "failed"
    row = row_of(db_engine, email_id)
    assert row.last_error == "gave up after 2 attempts; last error: 530 Authentication required"


def test_permanent_reply_fails_with_the_reply(db_engine: Engine, smtp_server, registry) -> None:
    email_id = queue(db_engine)
    smtp_server.handler.rcpt_replies.append("550 5.1.1 <ada@example.org>: user unknown")
    assert deliver(db_engine, email_id, smtp_server.mailer()) == "failed"
    row = row_of(db_engine, email_id)
    assert row.status == EmailStatus.FAILED
    assert row.last_error == "550 5.1.1 <ada@example.org>: user unknown"
    assert deliver(db_engine, email_id, smtp_server.mailer()) == "skipped"  # not retried
    assert smtp_server.handler.received == []
    assert registry.get_sample_value("bgworkers_email_failed_total", {"reason": "rejected"}) == 1


def test_gives_up_after_max_attempts(db_engine: Engine, smtp_server) -> None:
    email_id = queue(db_engine)
    smtp_server.handler.data_replies.extend(["451 4.3.0 local error"] * 2)
    with pytest.raises(SmtpTransientError):
        deliver(db_engine, email_id, smtp_server.mailer(), max_attempts=2)
    assert deliver(db_engine, email_id, smtp_server.mailer(), max_attempts=2) == "failed"
    row = row_of(db_engine, email_id)
    assert row.status == EmailStatus.FAILED
    assert row.last_error == "gave up after 2 attempts; last error: 451 4.3.0 local error"


def test_sent_email_is_not_sent_again(db_engine: Engine, smtp_server, registry) -> None:
    email_id = queue(db_engine)
    mailer = smtp_server.mailer()
    assert deliver(db_engine, email_id, mailer) == "sent"
    assert deliver(db_engine, email_id, mailer) == "skipped"
    assert len(smtp_server.handler.wait_for(1)) == 1
    assert registry.get_sample_value("bgworkers_email_claims_skipped_total") == 1


def test_claim_is_exclusive_until_the_timeout(db_engine: Engine) -> None:
    email_id = queue(db_engine)
    stale_before = NOW - timedelta(seconds=TIMEOUT_S)
    with Session(db_engine) as a, Session(db_engine) as b:
        token = claim(session=a, email_id=email_id, now=NOW, stale_before=stale_before)
        a.commit()
        assert token is not None
        assert claim(session=b, email_id=email_id, now=NOW, stale_before=stale_before) is None
        b.commit()
        later = NOW + timedelta(seconds=TIMEOUT_S + 1)
        stolen = claim(
            session=b,
            email_id=email_id,
            now=later,
            stale_before=later - timedelta(seconds=TIMEOUT_S),
        )
        b.commit()
        assert stolen is not None and stolen != token
    assert row_of(db_engine, email_id).attempts == 2


def test_sweep_recovers_stuck_rows_and_dispatches_in_pages(
    db_engine: Engine, smtp_server, registry
) -> None:
    ids = [queue(db_engine, key=f"k{i}") for i in range(7)]
    with Session(db_engine) as session:  # a sender died holding ids[0]
        claim(session=session, email_id=ids[0], now=NOW, stale_before=NOW)
        session.commit()
    pages: list[list[int]] = []
    alone: list[int] = []

    def sweep(at: datetime) -> tuple[int, int]:
        with Session(db_engine) as session:
            result = sweep_outbox(
                session=session,
                now=at,
                sending_timeout_s=TIMEOUT_S,
                dispatch=pages.append,
                dispatch_tried=alone.extend,
                page_size=3,
            )
        return result.recovered, result.dispatched

    # Fresh rows have their own message on the way: the sweep leaves them alone.
    assert sweep(NOW + timedelta(minutes=5)) == (0, 0)
    # After the redispatch delay (and the sending timeout) every row is handed out once:
    # the never-tried ones in pages, the one tried before alone (a page skips a tried email).
    assert sweep(NOW + timedelta(minutes=11)) == (1, 7)
    assert alone == [ids[0]]
    assert sorted(i for p in pages for i in p) == ids[1:]
    assert sweep(NOW + timedelta(minutes=12)) == (0, 0)
    row = row_of(db_engine, ids[0])
    assert row.status == EmailStatus.QUEUED and row.claim_token is None
    for email_id in ids:
        assert (
            deliver(db_engine, email_id, smtp_server.mailer(), now=NOW + timedelta(minutes=12))
            == "sent"
        )
    assert len(smtp_server.handler.wait_for(7)) == 7
    assert registry.get_sample_value("bgworkers_email_recovered_total") == 1
    assert registry.get_sample_value("bgworkers_email_dispatched_total") == 7


def test_late_sender_cannot_overwrite_a_recovered_row(db_engine: Engine, smtp_server) -> None:
    email_id = queue(db_engine)
    with Session(db_engine) as session:
        token = claim(session=session, email_id=email_id, now=NOW, stale_before=NOW)
        session.commit()
        assert token is not None
    later = NOW + timedelta(seconds=TIMEOUT_S + 60)
    assert deliver(db_engine, email_id, smtp_server.mailer(), now=later) == "sent"
    from bgworkers.email.outbox import _finish

    with Session(db_engine) as session:  # the first sender wakes up and reports a failure
        assert not _finish(session, email_id, token, status=EmailStatus.FAILED)
        session.commit()
    assert row_of(db_engine, email_id).status == EmailStatus.SENT


def test_rows_whose_senders_keep_dying_are_given_up(db_engine: Engine, smtp_server) -> None:
    email_id = queue(db_engine)
    at = NOW
    for _ in range(2):  # two senders claimed it and died without an SMTP answer
        with Session(db_engine) as session:
            assert claim(session=session, email_id=email_id, now=at, stale_before=at)
            session.commit()
        at += timedelta(seconds=TIMEOUT_S + 1)
    assert deliver(db_engine, email_id, smtp_server.mailer(), now=at, max_attempts=2) == "failed"
    row = row_of(db_engine, email_id)
    assert row.status == EmailStatus.FAILED and row.attempts == 3
    assert row.last_error is not None and row.last_error.startswith("gave up after 2 attempts")
    assert smtp_server.handler.received == []


def test_recording_sent_waits_out_a_short_database_outage() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError
    from sqlmodel import Session

    from bgworkers.email.outbox import record_patiently

    outcomes: list[object] = [OperationalError("UPDATE", {}, ConnectionRefusedError()), None]
    pauses: list[float] = []

    def write() -> bool:
        outcome = outcomes.pop(0) if outcomes else None
        if isinstance(outcome, Exception):
            raise outcome
        return True

    with Session(create_engine("sqlite://")) as session:
        assert record_patiently(session, write, sleep=pauses.append) is True
    assert pauses == [0.5] and outcomes == []


def test_recording_sent_gives_up_after_its_patience() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError
    from sqlmodel import Session

    from bgworkers.email.outbox import record_patiently

    def write() -> bool:
        raise OperationalError("UPDATE", {}, ConnectionRefusedError())

    with Session(create_engine("sqlite://")) as session, pytest.raises(OperationalError):
        record_patiently(session, write, patience_s=0.0, sleep=lambda _s: None)
