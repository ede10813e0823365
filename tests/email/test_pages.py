"""The emails of one transaction leave as pages; one bad email never holds, fails or repeats
the others of its page, and a page message delivered again sends nothing twice."""

from __future__ import annotations

import json
from email.message import EmailMessage
from itertools import count
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bgworkers.email.api import enqueue_email
from bgworkers.email.batch import Draft, add_emails, deliver_emails
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.outbox import MARK_EVERY
from bgworkers.email.paging import PAGE_SIZE
from bgworkers.email.smtp import Mailer
from bgworkers.outbox.models import OutboxMessage
from tests.email.helpers import NOW, SmtpServer, sending

POISON = "poison@example.org"  # refused for good (5xx to RCPT)
FLAKY = "flaky@example.org"  # refused for now (4xx to RCPT)


def queue(session: Session, count_: int, *, prefix: str = "bulk") -> list[int]:
    ids = []
    for n in range(count_):
        row = enqueue_email(
            session=session,
            recipient=f"user{n}@example.org",
            subject=f"Invoice {n}",
            text="Hello\n",
            idempotency_key=f"{prefix}:{n}",
        )
        assert row.id is not None
        ids.append(row.id)
    return ids


def messages(engine: Engine) -> list[tuple[str, list[Any], str | None]]:
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))).all()
    return [(r.actor, json.loads(r.body)["args"], r.dedupe_key) for r in rows]


def test_one_transactions_emails_become_page_messages_at_its_commit(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        ids = queue(session, PAGE_SIZE * 2 + 3)
        assert messages(db_engine) == []  # nothing is recorded before the commit
        session.commit()
    assert messages(db_engine) == [
        ("send_email_page", [ids[:PAGE_SIZE]], None),
        ("send_email_page", [ids[PAGE_SIZE : PAGE_SIZE * 2]], None),
        ("send_email_page", [ids[PAGE_SIZE * 2 :]], None),
    ]


def test_an_email_queued_alone_keeps_its_own_message(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        [email_id] = queue(session, 1)
        session.commit()
        assert queue(session, 1) == [email_id]  # the same key again: no second message
        session.commit()
    assert messages(db_engine) == [("send_email", [email_id], "send_email:bulk:0")]


def test_a_rollback_records_no_message_and_a_savepoint_keeps_the_rest(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        queue(session, 3, prefix="gone")
        session.rollback()
        kept = queue(session, 2, prefix="kept")
        with pytest.raises(RuntimeError), session.begin_nested():
            queue(session, 1, prefix="undone")
            raise RuntimeError("the caller changes its mind")
        session.commit()
        sent = [i for i in session.exec(select(OutboxEmail.id)).all() if i is not None]
    [(actor, [page], _)] = messages(db_engine)
    assert actor == "send_email_page" and sorted(sent) == kept
    assert page == kept  # the undone email is forgotten with its savepoint


class CountingMailer:
    """Sends through ``inner``; counts every attempt by recipient."""

    def __init__(self, inner: Mailer) -> None:
        self.inner = inner
        self.tries: dict[str, int] = {}

    def send(self, message: EmailMessage) -> None:
        raise AssertionError("the wire form is used")

    def send_bytes(self, *, sender: str, recipients: list[str], data: bytes) -> None:
        for recipient in recipients:
            self.tries[recipient] = self.tries.get(recipient, 0) + 1
        self.inner.send_bytes(sender=sender, recipients=recipients, data=data)

    def close(self) -> None:
        self.inner.close()


def write_page(engine: Engine, recipients: list[str]) -> list[int]:
    drafts = [
        Draft(recipient=r, subject=f"Hello {n}", text="Body\n", key=f"page:{n}")
        for n, r in enumerate(recipients)
    ]
    with Session(engine) as session:
        written = add_emails(session, drafts, now=NOW)
        session.commit()
    return [written[f"page:{n}"] for n in range(len(recipients))]


def states(engine: Engine) -> dict[str, tuple[str, int, str | None]]:
    with Session(engine) as session:
        rows = session.exec(select(OutboxEmail)).all()
    return {row.recipient: (row.status, row.attempts, row.last_error) for row in rows}


def test_a_refused_and_a_deferred_email_leave_the_rest_of_the_page_alone(
    db_engine: Engine, smtp_server: SmtpServer
) -> None:
    """Over two parts of a page: the others are sent once, in the same run (not delayed);
    the refused one is failed, the deferred one alone handed to its own retry message."""
    good = [f"user{n}@example.org" for n in range(MARK_EVERY + 4)]
    recipients = [*good[:3], POISON, *good[3:12], FLAKY, *good[12:]]
    ids = write_page(db_engine, recipients)
    smtp_server.handler.rcpt_by_address.update(
        {POISON: "550 5.1.1 No such user", FLAKY: "452 4.2.2 Mailbox full"}
    )
    mailer = CountingMailer(smtp_server.mailer())
    retried: list[int] = []
    with Session(db_engine) as session:
        done = deliver_emails(ids, session=session, sending=sending(mailer), retry=retried.extend)
    flaky, poison = ids[recipients.index(FLAKY)], ids[recipients.index(POISON)]
    assert retried == [flaky] == done.retried and done.failed == [poison]
    assert sorted(done.sent) == sorted(set(ids) - {flaky, poison})
    # Every good email reached the server during this one run, once.
    assert sorted(m["To"] for m in smtp_server.handler.received) == sorted(good)
    assert all(mailer.tries[r] == 1 for r in recipients)
    after = states(db_engine)
    assert after[POISON] == ("failed", 1, "550 5.1.1 No such user")
    assert after[FLAKY] == ("queued", 1, "452 4.2.2 Mailbox full")
    assert {after[r][0] for r in good} == {"sent"}


def test_a_page_delivered_again_sends_nothing_twice(
    db_engine: Engine, smtp_server: SmtpServer
) -> None:
    recipients = [f"user{n}@example.org" for n in range(MARK_EVERY * 2 + 5)] + [POISON]
    ids = write_page(db_engine, recipients)
    smtp_server.handler.rcpt_by_address[POISON] = "550 5.1.1 No such user"
    mailer, retried = smtp_server.mailer(), list[int]()
    with Session(db_engine) as session:
        first = deliver_emails(ids, session=session, sending=sending(mailer), retry=retried.extend)
        again = deliver_emails(ids, session=session, sending=sending(mailer), retry=retried.extend)
    assert len(first.sent) == len(ids) - 1 and again.sent == [] and again.skipped == len(ids)
    assert len(smtp_server.handler.received) == len(ids) - 1 and not retried


class CrashingMailer:
    """Sends through ``inner`` until the ``crash_at``-th email, where the process "dies"
    (an exception no sender catches, as a SIGKILL would leave things)."""

    def __init__(self, inner: Mailer, crash_at: int) -> None:
        self.inner, self.crash_at, self.sent = inner, crash_at, 0

    def send(self, message: EmailMessage) -> None:
        raise AssertionError("the wire form is used")

    def send_bytes(self, *, sender: str, recipients: list[str], data: bytes) -> None:
        if self.sent == self.crash_at:
            raise KeyboardInterrupt("the worker dies here")
        self.inner.send_bytes(sender=sender, recipients=recipients, data=data)
        self.sent += 1

    def close(self) -> None:
        self.inner.close()


def test_a_page_redelivered_after_a_crash_sends_the_rest_and_nothing_twice(
    db_engine: Engine, smtp_server: SmtpServer
) -> None:
    ids = write_page(db_engine, [f"user{n}@example.org" for n in range(MARK_EVERY * 3)])
    crash_at = MARK_EVERY + 3  # in the second part: three of it accepted, not yet marked
    crashing = CrashingMailer(smtp_server.mailer(), crash_at)
    with Session(db_engine) as session, pytest.raises(KeyboardInterrupt):
        deliver_emails(ids, session=session, sending=sending(crashing), retry=list[int]().extend)
    # RabbitMQ redelivers the unacknowledged page message to another worker.
    mailer, retried = smtp_server.mailer(), list[int]()
    with Session(db_engine) as session:
        again = deliver_emails(ids, session=session, sending=sending(mailer), retry=retried.extend)
    received = [m["To"] for m in smtp_server.handler.received]
    assert len(received) == len(set(received)) == crash_at + MARK_EVERY  # none twice
    assert sorted(again.sent) == ids[MARK_EVERY * 2 :] and not retried
    # The crashed part stays claimed until the sending timeout (then the sweep's): at most
    # one part is in that window.
    held = [r for r, (status, _, _) in states(db_engine).items() if status == "sending"]
    assert len(held) == MARK_EVERY


def test_a_page_hands_its_rest_on_after_its_time_slice(
    db_engine: Engine, smtp_server: SmtpServer
) -> None:
    ids = write_page(db_engine, [f"user{n}@example.org" for n in range(MARK_EVERY * 3)])
    ticks = count(step=3)  # seconds: each part "takes" three
    handed: list[int] = []
    with Session(db_engine) as session:
        done = deliver_emails(ids, session=session, sending=sending(smtp_server.mailer()),
                              retry=list[int]().extend, hand_on=handed.extend, slice_s=5,
                              monotonic=lambda: float(next(ticks)))  # fmt: skip
    assert sorted(done.sent) == ids[: MARK_EVERY * 2] and handed == ids[MARK_EVERY * 2 :]
    assert {states(db_engine)[f"user{n}@example.org"][0] for n in range(20, 30)} == {
        EmailStatus.QUEUED
    }


def test_a_page_commits_once_per_part(db_engine: Engine, smtp_server: SmtpServer) -> None:
    """The next part is claimed in the transaction that marks the part before it sent."""
    ids = write_page(db_engine, [f"user{n}@example.org" for n in range(MARK_EVERY * 3)])
    commits: list[object] = []

    def count(connection: object) -> None:
        commits.append(connection)

    event.listen(db_engine, "commit", count)
    try:
        with Session(db_engine) as session:
            done = deliver_emails(ids, session=session, sending=sending(smtp_server.mailer()),
                                  retry=list[int]().extend)  # fmt: skip
    finally:
        event.remove(db_engine, "commit", count)
    assert sorted(done.sent) == ids
    assert len(commits) == 1 + 3  # the first claim, then one per part


def test_a_page_delivered_again_leaves_a_deferred_email_to_its_retry(
    db_engine: Engine, smtp_server: SmtpServer
) -> None:
    """A redelivered page (after a crash) must not try an email whose retry is waiting out its
    backoff: the email is tried again by its own retry message, once, and not lost."""
    from bgworkers.email.along import deliver_email_along

    recipients = [f"user{n}@example.org" for n in range(4)] + [FLAKY]
    ids = write_page(db_engine, recipients)
    flaky = ids[-1]
    smtp_server.handler.rcpt_by_address[FLAKY] = "452 4.2.2 Mailbox full"
    mailer, retried = CountingMailer(smtp_server.mailer()), list[int]()
    with Session(db_engine) as session:
        first = deliver_emails(ids, session=session, sending=sending(mailer), retry=retried.extend)
    assert first.retried == retried == [flaky]
    del smtp_server.handler.rcpt_by_address[FLAKY]  # the mailbox has room again
    with Session(db_engine) as session:
        again = deliver_emails(ids, session=session, sending=sending(mailer), retry=retried.extend)
    assert again.sent == [] and again.skipped == len(ids) and mailer.tries[FLAKY] == 1
    assert states(db_engine)[FLAKY] == ("queued", 1, "452 4.2.2 Mailbox full")
    # Its retry message (send_email, after the backoff) sends it.
    with Session(db_engine) as session:
        outcome = deliver_email_along(
            flaky, session=session, sending=sending(mailer), retry=retried.extend
        )
    assert outcome == "sent" and mailer.tries[FLAKY] == 2 and retried == [flaky]
    assert sorted(m["To"] for m in smtp_server.handler.received) == sorted(recipients)


def test_a_session_on_the_applications_connection_records_its_messages_at_once(
    db_engine: Engine,
) -> None:
    """The application commits its connection's transaction itself, after a flush only: no
    session commit records pages then, so each email's message is written with it."""
    with db_engine.begin() as connection:
        session = Session(bind=connection)
        ids = queue(session, 3)
        session.flush()
    assert messages(db_engine) == [
        ("send_email", [email_id], f"send_email:bulk:{n}") for n, email_id in enumerate(ids)
    ]


def test_an_email_of_a_rolled_back_savepoint_gets_no_message(db_engine: Engine) -> None:
    """Its message would hold the key's dedupe key: the email queued again with that key
    later would get no message of its own and wait for the sweep."""
    with Session(db_engine) as session:
        with pytest.raises(RuntimeError), session.begin_nested():
            queue(session, 1)
            raise RuntimeError("the caller changes its mind")
        with session.begin_nested():
            kept = queue(session, 2, prefix="kept")
        session.commit()
        assert messages(db_engine) == [("send_email_page", [kept], None)]
        [email_id] = queue(session, 1)  # the same key, queued again
        session.commit()
    assert messages(db_engine)[1:] == [("send_email", [email_id], "send_email:bulk:0")]


def test_a_savepoint_rolled_back_around_a_released_one_drops_both(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        kept = queue(session, 1, prefix="kept")
        with pytest.raises(RuntimeError), session.begin_nested():
            with session.begin_nested():
                queue(session, 2, prefix="inner")
            queue(session, 1, prefix="outer")
            raise RuntimeError("the caller changes its mind")
        session.commit()
    assert messages(db_engine) == [("send_email", kept, "send_email:kept:0")]
