"""Emails by the page: one INSERT per page, one claim, one SMTP connection, bad rows alone."""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bgworkers.email.batch import Draft, add_emails, deliver_emails
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.smtp import Mailer
from tests.email.helpers import (
    NOW,
    DownMailer,
    PoisonedMailer,
    SmtpServer,
    drafts,
    sending,
    statuses,
)


def test_a_page_is_written_once_and_a_bad_draft_alone_is_refused(db_engine: Engine) -> None:
    page = [*drafts(3), Draft(recipient="not an address", subject="x", text="y", key="page:bad")]
    with Session(db_engine) as session:
        written = add_emails(session, page, now=NOW)
        session.commit()
        assert sorted(written) == ["page:0", "page:1", "page:2"]
        assert add_emails(session, page, now=NOW) == {}  # every key exists: nothing new
        session.commit()
    assert statuses(db_engine) == {f"user{n}@example.org": "queued" for n in range(3)}


def test_a_page_goes_out_on_one_connection_and_never_twice(
    db_engine: Engine, smtp_server: SmtpServer
) -> None:
    mailer = smtp_server.mailer()
    with Session(db_engine) as session:
        ids = list(add_emails(session, drafts(12), now=NOW).values())
        session.commit()
        retried: list[int] = []
        done = deliver_emails(ids, session=session, sending=sending(mailer), retry=retried.extend)
        again = deliver_emails(ids, session=session, sending=sending(mailer), retry=retried.extend)
    assert sorted(done.sent) == sorted(ids) and not retried
    assert again.sent == [] and again.skipped == 12  # a duplicated message sends nothing
    received = smtp_server.handler.wait_for(12)
    assert len(received) == 12 and smtp_server.handler.connections == 1
    assert set(statuses(db_engine).values()) == {"sent"}


def test_one_refused_and_one_deferred_email_do_not_hold_the_page(
    db_engine: Engine, smtp_server: SmtpServer
) -> None:
    handler = smtp_server.handler
    with Session(db_engine) as session:
        ids = sorted(add_emails(session, drafts(5), now=NOW).values())
        session.commit()
        handler.rcpt_replies.append("550 5.1.1 No such user")  # the first email's RCPT
        handler.data_replies.append("451 4.3.0 Try again later")  # the second email's DATA
        retried: list[int] = []
        done = deliver_emails(
            ids, session=session, sending=sending(smtp_server.mailer()), retry=retried.extend
        )
    assert done.failed == [ids[0]] and done.retried == [ids[1]] == retried
    assert sorted(done.sent) == ids[2:]
    assert len(handler.wait_for(3)) == 3
    assert statuses(db_engine) == {
        "user0@example.org": "failed",
        "user1@example.org": "queued",
        "user2@example.org": "sent",
        "user3@example.org": "sent",
        "user4@example.org": "sent",
    }


def test_an_unexpected_error_on_one_email_is_retried_alone(
    db_engine: Engine, smtp_server: SmtpServer
) -> None:
    mailer = PoisonedMailer(smtp_server.mailer(), "user1@example.org")
    with Session(db_engine) as session:
        ids = sorted(add_emails(session, drafts(3), now=NOW).values())
        session.commit()
        retried: list[int] = []
        done = deliver_emails(ids, session=session, sending=sending(mailer), retry=retried.extend)
    assert retried == [ids[1]] and sorted(done.sent) == [ids[0], ids[2]]
    assert len(smtp_server.handler.wait_for(2)) == 2
    with Session(db_engine) as session:
        row = session.get(OutboxEmail, ids[1])
        assert row is not None and row.status == EmailStatus.QUEUED
        assert row.claim_token is None and "RuntimeError" in (row.last_error or "")


def test_a_server_that_does_not_answer_is_tried_once_per_page(db_engine: Engine) -> None:
    mailer = DownMailer()
    with Session(db_engine) as session:
        ids = sorted(add_emails(session, drafts(4), now=NOW).values())
        session.commit()
        retried: list[int] = []
        done = deliver_emails(ids, session=session, sending=sending(mailer), retry=retried.extend)
    assert mailer.calls == 1 and done.sent == [] and retried == ids == done.retried
    with Session(db_engine) as session:
        rows = session.exec(select(OutboxEmail).order_by(col(OutboxEmail.id))).all()
    assert {row.status for row in rows} == {EmailStatus.QUEUED}
    assert "Connection refused" in (rows[0].last_error or "")
    assert all((row.last_error or "").startswith("not tried") for row in rows[1:])


class DatabaseFailingMailer:
    """Fails one recipient's send with a real PostgreSQL error whose statement and bound
    values name the recipient; sends the others through ``inner``."""

    def __init__(self, inner: Mailer, poisoned: str, engine: Engine) -> None:
        self.inner, self.poisoned, self.engine = inner, poisoned, engine

    def _fail(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(
                text("INSERT INTO no_such_table (email) VALUES (:e)"), {"e": self.poisoned}
            )

    def send(self, message: EmailMessage) -> None:
        if message["To"] == self.poisoned:
            self._fail()
        self.inner.send(message)

    def send_bytes(self, *, sender: str, recipients: list[str], data: bytes) -> None:
        if recipients == [self.poisoned]:
            self._fail()
        self.inner.send_bytes(sender=sender, recipients=recipients, data=data)

    def close(self) -> None:
        self.inner.close()


def test_a_requeued_email_keeps_a_database_errors_reason_only(
    postgres_engine: Engine, smtp_server: SmtpServer
) -> None:
    """``last_error`` is shown to operators: no statement, no bound values (an address)."""
    mailer = DatabaseFailingMailer(smtp_server.mailer(), "user1@example.org", postgres_engine)
    with Session(postgres_engine) as session:
        ids = sorted(add_emails(session, drafts(3), now=NOW).values())
        session.commit()
        retried: list[int] = []
        deliver_emails(ids, session=session, sending=sending(mailer), retry=retried.extend)
    assert retried == [ids[1]]
    with Session(postgres_engine) as session:
        row = session.get(OutboxEmail, ids[1])
        assert row is not None and row.status == EmailStatus.QUEUED
        assert row.last_error == 'UndefinedTable: relation "no_such_table" does not exist'
