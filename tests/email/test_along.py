"""A send_email run takes other waiting emails along: each still sent once, bad ones alone."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bgworkers.email.along import ALONG, deliver_email_along
from bgworkers.email.batch import add_emails
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.smtp import SmtpTransientError
from tests.email.helpers import (
    NOW,
    DownMailer,
    PoisonedMailer,
    SmtpServer,
    drafts,
    sending,
    statuses,
)


def write(engine: Engine, count: int) -> list[int]:
    with Session(engine) as session:
        ids = sorted(add_emails(session, drafts(count), now=NOW).values())
        session.commit()
    return ids


def test_a_run_sends_its_email_and_others_each_once(
    db_engine: Engine, smtp_server: SmtpServer
) -> None:
    ids = write(db_engine, ALONG + 3)
    mailer, retried = smtp_server.mailer(), list[int]()
    with Session(db_engine) as session:
        first = deliver_email_along(
            ids[-1], session=session, sending=sending(mailer), retry=retried.extend
        )
        taken = [row for row, status in statuses(db_engine).items() if status == "sent"]
        later = [
            deliver_email_along(n, session=session, sending=sending(mailer), retry=retried.extend)
            for n in ids
        ]
    assert first == "sent" and len(taken) == ALONG + 1 and not retried
    # The first of them finds its email sent and takes the last two along.
    assert set(later) == {"skipped"}
    assert len(smtp_server.handler.wait_for(len(ids))) == len(ids)
    assert set(statuses(db_engine).values()) == {"sent"}
    assert smtp_server.handler.connections == 1


def test_a_poisoned_email_taken_along_is_retried_alone(
    db_engine: Engine, smtp_server: SmtpServer
) -> None:
    ids = write(db_engine, 4)
    mailer = PoisonedMailer(smtp_server.mailer(), "user2@example.org")
    retried: list[int] = []
    with Session(db_engine) as session:
        own = deliver_email_along(ids[0], session=session, sending=sending(mailer),
                                  retry=retried.extend)  # fmt: skip
    assert own == "sent" and retried == [ids[2]]
    assert len(smtp_server.handler.wait_for(3)) == 3
    assert statuses(db_engine) == {
        "user0@example.org": "sent",
        "user1@example.org": "sent",
        "user2@example.org": "queued",
        "user3@example.org": "sent",
    }


def test_the_runs_own_deferred_email_raises_after_the_others_are_sent(
    db_engine: Engine, smtp_server: SmtpServer
) -> None:
    ids = write(db_engine, 3)
    smtp_server.handler.data_replies.append("451 4.3.0 Try again later")  # the own email
    retried: list[int] = []
    with Session(db_engine) as session, pytest.raises(SmtpTransientError):
        deliver_email_along(ids[1], session=session, sending=sending(smtp_server.mailer()),
                            retry=retried.extend)  # fmt: skip
    assert not retried  # the own email is retried by its message (dramatiq's backoff)
    assert len(smtp_server.handler.wait_for(2)) == 2
    assert statuses(db_engine) == {
        "user0@example.org": "sent",
        "user1@example.org": "queued",
        "user2@example.org": "sent",
    }


def test_emails_waiting_out_a_backoff_are_not_taken_along(
    db_engine: Engine, smtp_server: SmtpServer
) -> None:
    ids = write(db_engine, 3)
    with Session(db_engine) as session:
        session.execute(update(OutboxEmail).where(col(OutboxEmail.id) == ids[2]).values(attempts=1))
        session.commit()
        deliver_email_along(ids[0], session=session, sending=sending(smtp_server.mailer()),
                            retry=list[int]().extend)  # fmt: skip
    assert len(smtp_server.handler.wait_for(2)) == 2
    assert statuses(db_engine)["user2@example.org"] == "queued"


def test_a_server_that_does_not_answer_puts_the_others_back_untried(db_engine: Engine) -> None:
    ids = write(db_engine, 3)
    mailer, retried = DownMailer(), list[int]()
    with Session(db_engine) as session, pytest.raises(SmtpTransientError):
        deliver_email_along(ids[0], session=session, sending=sending(mailer), retry=retried.extend)
    assert mailer.calls == 1 and retried == ids[1:]
    with Session(db_engine) as session:
        rows = session.exec(select(OutboxEmail).order_by(col(OutboxEmail.id))).all()
    assert {row.status for row in rows} == {EmailStatus.QUEUED}
    assert all((row.last_error or "").startswith("not tried") for row in rows[1:])


@pytest.mark.integration
def test_concurrent_runs_send_every_email_once(
    postgres_engine: Engine, smtp_server: SmtpServer
) -> None:
    ids = write(postgres_engine, 60)
    outcomes: list[str] = []

    def run(email_ids: list[int]) -> None:
        mailer = smtp_server.mailer()
        with Session(postgres_engine) as session:
            for email_id in email_ids:
                outcomes.append(deliver_email_along(
                    email_id, session=session, sending=sending(mailer), retry=list[int]().extend
                ))  # fmt: skip

    threads = [threading.Thread(target=run, args=(ids[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    received = smtp_server.handler.wait_for(len(ids))
    assert sorted(str(m["To"]) for m in received) == sorted(
        f"user{n}@example.org" for n in range(60)
    )
    assert len(received) == len(ids) and set(statuses(postgres_engine).values()) == {"sent"}
    assert outcomes.count("sent") + outcomes.count("skipped") == len(ids)


@pytest.mark.integration
def test_a_run_never_waits_for_a_row_another_transaction_holds(
    postgres_engine: Engine, smtp_server: SmtpServer
) -> None:
    ids = write(postgres_engine, 3)
    mailer = smtp_server.mailer()
    with postgres_engine.connect() as holder:  # e.g. another run claiming it, not committed
        holder.execute(
            select(OutboxEmail.id).where(col(OutboxEmail.id) == ids[0]).with_for_update()
        )
        with Session(postgres_engine) as session:
            own_held = deliver_email_along(
                ids[0], session=session, sending=sending(mailer), retry=list[int]().extend
            )
            other_held = deliver_email_along(
                ids[1], session=session, sending=sending(mailer), retry=list[int]().extend
            )
        holder.rollback()
    assert own_held == "skipped"  # its own run took ids[1] and ids[2] along
    assert other_held == "skipped"
    assert statuses(postgres_engine) == {
        "user0@example.org": "queued",  # left to whoever holds it (or the next run, the sweep)
        "user1@example.org": "sent",
        "user2@example.org": "sent",
    }
