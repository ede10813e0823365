"""An email the SMTP server accepted is recorded ``sent`` whatever fails after it: the sweep
never finds it ``sending`` and sends it a second time.

Each test runs a page as a worker would (its message retried once if it raised), then the
sweep after the sending timeout, and counts what the SMTP server received: each email once.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dramatiq
import pytest
from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlmodel import Session, col, select

from bgworkers.db.engine import use_engine
from bgworkers.email.actors import send_email_page
from bgworkers.email.along import deliver_email_along
from bgworkers.email.batch import add_emails, deliver_emails
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.outbox import MARK_EVERY, Sending, record_sent, sweep_outbox
from bgworkers.email.smtp import Mailer, use_mailer
from tests.email.helpers import NOW, SmtpServer, drafts, sending
from tests.platform_helpers import wait_for

#: When the sweep runs: after the sending timeout of the first attempt's claims.
LATER = NOW + timedelta(seconds=601)


def write_page(engine: Engine, count: int) -> list[int]:
    with Session(engine) as session:
        ids = sorted(add_emails(session, drafts(count), now=NOW).values())
        session.commit()
    return ids


def run_as_a_message(engine: Engine, ids: list[int], how: Sending) -> None:
    """``send_email_page``'s work, retried once by dramatiq if it raised."""
    for _attempt in range(2):
        with Session(engine) as session:
            try:
                deliver_emails(ids, session=session, sending=how, retry=list[int]().extend)
                return
            except (SQLAlchemyError, TimeLimitExceeded):
                continue


def sweep_then_deliver(engine: Engine, mailer: Mailer) -> None:
    """``process_email_queue`` after the sending timeout, then the messages it records: a
    page of the never-tried emails, a ``send_email`` for each email tried before."""
    later = Sending(mailer=mailer, sender="assistant@example.org", sending_timeout_s=600,
                    max_attempts=3, clock=lambda: LATER)  # fmt: skip
    pages: list[int] = []
    tried: list[int] = []
    with Session(engine) as session:
        sweep_outbox(session=session, now=LATER, sending_timeout_s=600,
                     dispatch=pages.extend, dispatch_tried=tried.extend)  # fmt: skip
    run_as_a_message(engine, pages, later)
    for email_id in tried:
        with Session(engine) as session:
            deliver_email_along(email_id, session=session, sending=later,
                                retry=list[int]().extend)  # fmt: skip


def copies_received(smtp_server: SmtpServer) -> Counter[str]:
    return Counter(str(m["To"]) for m in smtp_server.handler.received)


def once_each(count: int) -> Counter[str]:
    return Counter(f"user{n}@example.org" for n in range(count))


def all_sent(engine: Engine, ids: list[int]) -> bool:
    with Session(engine) as session:
        return all(
            (row := session.get(OutboxEmail, i)) is not None and row.status == EmailStatus.SENT
            for i in ids
        )


@pytest.fixture
def one_connection_engine(postgres_engine: Engine) -> Iterator[Engine]:
    """The test database behind a pool of one connection that waits 0.2 s for it."""
    url = postgres_engine.url.render_as_string(hide_password=False)
    engine = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    yield engine
    engine.dispose()


class PoolHoggingMailer:
    """Sends through ``inner``; after the ``hog_after``-th email, another thread of the
    process holds the pool's only connection for ``hold_s`` seconds (a busy worker)."""

    def __init__(self, inner: Mailer, engine: Engine, hog_after: int, hold_s: float) -> None:
        self.inner, self.engine, self.hog_after, self.hold_s = inner, engine, hog_after, hold_s
        self.sent = 0
        self.release = threading.Timer(hold_s, lambda: None)

    def send(self, message: Any) -> None:
        raise AssertionError("the wire form is used")

    def send_bytes(self, *, sender: str, recipients: list[str], data: bytes) -> None:
        self.inner.send_bytes(sender=sender, recipients=recipients, data=data)
        self.sent += 1
        if self.sent == self.hog_after:
            self.release = threading.Timer(self.hold_s, self.engine.connect().close)
            self.release.start()

    def close(self) -> None:
        self.inner.close()


def test_a_pool_timeout_while_recording_sent_sends_nothing_twice(
    one_connection_engine: Engine, smtp_server: SmtpServer
) -> None:
    """SQLAlchemy's pool ``TimeoutError`` is not an ``OperationalError``: recording must
    wait it out too."""
    ids = write_page(one_connection_engine, MARK_EVERY * 2)
    hogging = PoolHoggingMailer(smtp_server.mailer(), one_connection_engine,
                                hog_after=MARK_EVERY, hold_s=1.0)  # fmt: skip
    run_as_a_message(one_connection_engine, ids, sending(hogging))
    hogging.release.join()
    assert all_sent(one_connection_engine, ids)
    sweep_then_deliver(one_connection_engine, smtp_server.mailer())
    assert copies_received(smtp_server) == once_each(len(ids))


class FailingNextClaim:
    """Makes the ``which``-th claim of outbox rows on ``engine`` raise ``error`` once."""

    def __init__(self, engine: Engine, which: int, error: BaseException) -> None:
        self.engine, self.which, self.error, self.claims = engine, which, error, 0

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE email_outbox SET status") and "RETURNING" in statement:
            self.claims += 1
            if self.claims == self.which:
                raise self.error

    def __enter__(self) -> FailingNextClaim:
        event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self)


@pytest.mark.parametrize(
    "error",
    [
        InterfaceError("UPDATE email_outbox", {}, Exception("the connection is closed")),
        TimeLimitExceeded(),
    ],
    ids=["interface_error", "time_limit"],
)
def test_a_failed_claim_of_the_next_part_keeps_the_part_before_sent(
    postgres_engine: Engine, smtp_server: SmtpServer, error: BaseException
) -> None:
    """The next part is claimed in the transaction that marks the part before sent: its
    rollback must not leave that part ``sending``."""
    ids = write_page(postgres_engine, MARK_EVERY * 3)
    with FailingNextClaim(postgres_engine, which=2, error=error):
        run_as_a_message(postgres_engine, ids, sending(smtp_server.mailer()))
    assert all_sent(postgres_engine, ids[:MARK_EVERY])
    sweep_then_deliver(postgres_engine, smtp_server.mailer())
    assert copies_received(smtp_server) == once_each(len(ids))
    assert all_sent(postgres_engine, ids)


def test_sent_marks_the_database_never_takes_are_said_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refused() -> bool:
        raise InterfaceError("UPDATE email_outbox", {}, Exception("the connection is closed"))

    with (
        Session(create_engine("sqlite://")) as session,
        caplog.at_level(logging.ERROR),
        pytest.raises(InterfaceError),
    ):
        record_sent(session, refused, [7, 8], patience_s=0.0)
    lines = [r.getMessage() for r in caplog.records if "email_sent_not_recorded" in r.getMessage()]
    assert len(lines) == 1
    assert "[7, 8]" in lines[0] and "sweep sends them again" in lines[0]


class LostCommitAnswer:
    """The ``which``-th commit on ``engine`` is made, then its answer is lost: the client
    sees an error for a transaction the server committed."""

    def __init__(self, engine: Engine, which: int) -> None:
        self.engine, self.which, self.commits = engine, which, 0

    def __call__(self, conn: Any) -> None:
        self.commits += 1
        if self.commits == self.which:
            conn.connection.dbapi_connection.commit()
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    def __enter__(self) -> LostCommitAnswer:
        event.listen(self.engine, "commit", self)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "commit", self)


def test_a_part_whose_claim_was_committed_unseen_is_sent_at_once(
    postgres_engine: Engine, smtp_server: SmtpServer
) -> None:
    """The commit that marks a part sent and claims the next one is made, but its answer is
    lost: the claim is run again and takes the rows it already holds, instead of leaving
    them to the sweep after the sending timeout."""
    ids = write_page(postgres_engine, MARK_EVERY * 2)
    with LostCommitAnswer(postgres_engine, which=2):  # the first claim, then this one
        run_as_a_message(postgres_engine, ids, sending(smtp_server.mailer()))
    assert all_sent(postgres_engine, ids)
    assert copies_received(smtp_server) == once_each(len(ids))
    with postgres_engine.connect() as conn:  # taken again is not tried again
        attempts = conn.execute(select(OutboxEmail.attempts).where(col(OutboxEmail.id).in_(ids)))
        assert {n for (n,) in attempts} == {1}


@pytest.mark.integration
def test_a_worker_whose_pool_is_busy_records_its_page_sent(
    postgres_engine: Engine,
    one_connection_engine: Engine,
    smtp_server: SmtpServer,
    rabbit_worker: dramatiq.Worker,
    app_broker: dramatiq.Broker,
) -> None:
    """The same pool timeout through RabbitMQ and a worker running ``send_email_page``."""
    ids = write_page(one_connection_engine, MARK_EVERY * 2)
    hogging = PoolHoggingMailer(smtp_server.mailer(), one_connection_engine,
                                hog_after=MARK_EVERY, hold_s=1.0)  # fmt: skip
    use_engine(one_connection_engine)
    use_mailer(hogging)
    try:
        send_email_page.send(ids)
        # Read on the test's own pool: the worker's has one connection.
        wait_for(lambda: all_sent(postgres_engine, ids), timeout_s=30,
                 what="the page to be recorded sent")  # fmt: skip
    finally:
        use_mailer(None)
        use_engine(postgres_engine)
    sweep_then_deliver(postgres_engine, smtp_server.mailer())
    assert copies_received(smtp_server) == once_each(len(ids))
