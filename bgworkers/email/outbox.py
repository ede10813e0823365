"""The email outbox: write an email once, deliver it at most once per key, at least once in the end.

How the guarantees hold:

* **One row per idempotency key** (a unique index): adding the same key again returns the
  existing row, so a retried caller never queues a second email.
* **Atomic claim**: a sender moves the row from ``queued`` to ``sending`` with one
  conditional UPDATE and commits before talking to SMTP, so two workers (or a message
  delivered twice) never send the same row: the second finds nothing to claim.
* **At least once in the end**: a transient failure puts the row back to ``queued``; the
  actor is retried with backoff and the sweep (:func:`sweep_outbox`) re-dispatches rows whose
  message got lost or gave up. A worker that dies while sending leaves the row in
  ``sending``; after ``sending_timeout_s`` the row may be claimed again.

The one window no outbox can close: a crash after the SMTP server accepted the email and
before the row is marked sent. That email is sent again after the timeout; it carries the
same ``Message-ID`` (derived from the key), so mail clients show it once.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy import and_, bindparam, case, or_, update
from sqlalchemy.exc import (
    DisconnectionError,
    InterfaceError,
    OperationalError,
    PendingRollbackError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session, col, select

from bgworkers.db.engine import insert_if_absent
from bgworkers.email.metrics import EMAIL_METRICS
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.smtp import Mailer, SmtpPermanentError, SmtpTransientError
from bgworkers.email.wire import envelope_sender, wire_bytes
from bgworkers.errors import PermanentError
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.intervals import LogInterval
from bgworkers.logs.loggers import get_logger

log = get_logger(__name__)

#: How long a row handed to a ``send_email`` message is left alone by the sweep: longer
#: than the time a message normally waits in the queue, so a backlog gets no duplicates.
REDISPATCH_AFTER = timedelta(minutes=10)
MAX_SUBJECT_LENGTH = 500
MAX_KEY_LENGTH = 200
MAX_ERROR_LENGTH = 2000
#: Seconds a sender keeps trying to record that an email was sent while the database does
#: not answer, before giving up (the claim then expires and the sweep sends it again).
RECORD_SENT_PATIENCE_S = 30.0
_T = TypeVar("_T")
#: Database errors that pass with time (the server away or restarting, a connection lost, no
#: free connection in the pool): worth waiting out. Any other (a constraint, a bad statement)
#: fails the same way on every try, so waiting would only hold the message.
_PASSING = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout, PendingRollbackError)
#: One ``email_outcome_waiting_for_database`` line a minute per process, not one per attempt.
_WAITING_NOTICE = LogInterval(60.0)
#: Sent rows are marked (and committed) every this many emails of a run.
MARK_EVERY = 10
#: ``last_error`` of the emails of a run left untried after the SMTP server did not answer.
NOT_TRIED = "not tried: the SMTP server did not answer for an earlier email of the page"

Outcome = Literal["sent", "failed", "skipped"]


class InvalidEmail(PermanentError):
    """The email cannot be queued as given (bad address, header injection, missing key)."""


#: Plain ASCII dot-atom addresses (most of them): valid without the standard library's
#: header parser, which costs ~0.1 ms per address; anything else goes through the parser.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def is_email_address(text: str) -> bool:
    """True for a bare address (``user@example.org``) that can go in a To header."""
    if _PLAIN_ADDRESS.fullmatch(text):
        return True
    try:
        address = Address(addr_spec=text)
    except (ValueError, IndexError, HeaderParseError):  # "a@x..y" raised HeaderParseError
        return False
    return bool(address.domain and address.username)


def validate_email_fields(*, recipient: str, subject: str, text: str, key: str) -> None:
    problems: list[str] = []
    if not is_email_address(recipient):
        problems.append(f"recipient {recipient!r} is not an email address")
    if "\r" in subject or "\n" in subject:
        problems.append("the subject contains a line break")
    if len(subject) > MAX_SUBJECT_LENGTH:
        problems.append(f"the subject is longer than {MAX_SUBJECT_LENGTH} characters")
    if not text.strip():
        problems.append("the text body is empty")
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        problems.append(f"the idempotency key must have 1 to {MAX_KEY_LENGTH} characters")
    if problems:
        raise InvalidEmail("cannot queue email: " + "; ".join(problems))


def add_email(
    *,
    session: Session,
    recipient: str,
    subject: str,
    text: str,
    html: str | None,
    idempotency_key: str,
    now: datetime,
) -> tuple[OutboxEmail, bool]:
    """Write the email unless its key exists; return the row and whether it is new.

    The caller records the ``send_email`` message in the same transaction (the message
    outbox, see :func:`bgworkers.email.api.enqueue_email`); the sweep covers a failed one
    after :data:`REDISPATCH_AFTER`.
    """
    validate_email_fields(recipient=recipient, subject=subject, text=text, key=idempotency_key)
    existing = _by_key(session, idempotency_key)
    if existing is not None:
        return existing, False
    created = insert_if_absent(
        session,
        OutboxEmail,
        conflict_columns=("idempotency_key",),
        idempotency_key=idempotency_key,
        recipient=recipient,
        subject=subject,
        body_text=text,
        body_html=html,
        status=EmailStatus.QUEUED,
        attempts=0,
        dispatch_after=now + REDISPATCH_AFTER,
        created_at=now,
        updated_at=now,
    )
    row = _by_key(session, idempotency_key)
    assert row is not None  # inserted now or by the transaction that won the race
    if created:
        EMAIL_METRICS.get().enqueued.inc()
    return row, created


def _by_key(session: Session, key: str) -> OutboxEmail | None:
    return session.exec(select(OutboxEmail).where(OutboxEmail.idempotency_key == key)).first()


def claim(*, session: Session, email_id: int, now: datetime, stale_before: datetime) -> str | None:
    """Take the row for sending; return the claim token, or None if it is not ours to send."""
    token = str(uuid.uuid4())
    rows = claim_rows(session, [email_id], token=token, now=now, stale_before=stale_before)
    return token if rows else None


_TABLE = OutboxEmail.__table__  # type: ignore[attr-defined]
_C = _TABLE.c
#: What a sender reads of a row it claimed.
_SENDING_COLUMNS = (
    _C.id,
    _C.idempotency_key,
    _C.recipient,
    _C.subject,
    _C.body_text,
    _C.body_html,
    _C.created_at,
    _C.attempts,
    _C.last_error,
)

#: A row a sender may take: ``queued``, or ``sending`` since before ``stale_before`` (its
#: sender died).
CLAIMABLE = or_(
    _C.status == EmailStatus.QUEUED,
    and_(_C.status == EmailStatus.SENDING, _C.claimed_at < bindparam("stale_before")),
)


def claim_statement(which: Any) -> Any:
    """The claim of the rows ``which`` selects, as one Core statement to build once.

    One conditional UPDATE, so exactly one concurrent claimer wins each row; it returns what
    sending needs (Core rows), so no second query reads them. Run it with
    :func:`run_claim`. Why built once: the ORM's bulk UPDATE path, built per call, was most
    of a send's CPU; SQLAlchemy compiles a statement once per process and caches it.
    """
    return (
        _TABLE.update()
        .where(which)
        .values(
            status=EmailStatus.SENDING,
            claimed_at=bindparam("now"),
            claim_token=bindparam("token"),
            # A row its own claim takes again (its commit's answer was lost) is not a new try.
            attempts=case(
                (_C.claim_token == bindparam("token"), _C.attempts), else_=_C.attempts + 1
            ),
            updated_at=bindparam("now"),
        )
        .returning(*_SENDING_COLUMNS)
    )


def run_claim(
    session: Session, statement: Any, *, token: str, now: datetime, stale_before: datetime,
    **params: object,
) -> list[Any]:  # fmt: skip
    """Run a :func:`claim_statement` with ``token``; the rows claimed, by id."""
    values = {"token": token, "now": now, "stale_before": stale_before, **params}
    return sorted(session.execute(statement, values).all(), key=lambda row: row.id)


_CLAIM = claim_statement(and_(_C.id.in_(bindparam("ids", expanding=True)), CLAIMABLE))


def claim_rows(
    session: Session, email_ids: list[int], *, token: str, now: datetime, stale_before: datetime
) -> list[Any]:
    """Claim the given rows (those :data:`CLAIMABLE`) for sending with ``token``; return
    those claimed, by id."""
    return run_claim(session, _CLAIM, token=token, now=now, stale_before=stale_before,
                     ids=email_ids)  # fmt: skip


def _finish(session: Session, email_id: int, token: str, **values: object) -> bool:
    statement = _TABLE.update().where(_C.id == email_id, _C.claim_token == token).values(**values)
    return bool(session.execute(statement).rowcount == 1)  # type: ignore[attr-defined]


def message_id_for(key: str, sender: str) -> str:
    """A stable Message-ID per idempotency key, so a re-send is recognisable as the same email."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    return f"<{digest}@{domain}>"


class EmailContent(Protocol):
    """What :func:`build_message` reads of a row (an ``OutboxEmail`` or a Core row)."""

    recipient: str
    subject: str
    created_at: datetime
    idempotency_key: str
    body_text: str
    body_html: str | None


def build_message(row: EmailContent, *, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row.recipient
    message["Subject"] = row.subject
    message["Date"] = format_datetime(row.created_at)
    message["Message-ID"] = message_id_for(row.idempotency_key, sender)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to us
    message.set_content(row.body_text)
    if row.body_html:
        message.add_alternative(row.body_html, subtype="html")
    return message


def send_row(mailer: Mailer, row: EmailContent, *, sender: str) -> None:
    """Send one outbox row: in wire form (:mod:`bgworkers.email.wire`) when its headers are
    plain ASCII, else as an :class:`EmailMessage` that encodes them."""
    message_id = message_id_for(row.idempotency_key, sender)
    data = wire_bytes(row, sender=sender, message_id=message_id)
    if data is None:
        mailer.send(build_message(row, sender=sender))
    else:
        mailer.send_bytes(sender=envelope_sender(sender), recipients=[row.recipient], data=data)


@dataclass(frozen=True)
class Sending:
    """How to send: the process's mailer and the outbox settings."""

    mailer: Mailer
    sender: str
    sending_timeout_s: float
    max_attempts: int
    clock: Callable[[], datetime]


@dataclass
class Delivery:
    """What :func:`send_claimed` did with the rows it was given, by email id."""

    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    skipped: int = 0
    #: The SMTP server gave no answer at all (refused, timed out): the rest went untried.
    server_down: bool = False

    def add(self, other: Delivery) -> None:
        """Count ``other`` (a later part of the same page) in this one."""
        self.sent += other.sent
        self.failed += other.failed
        self.retried += other.retried
        self.skipped += other.skipped
        self.server_down = self.server_down or other.server_down


def deliver_email(
    email_id: int,
    *,
    session: Session,
    mailer: Mailer,
    clock: Callable[[], datetime],
    sender: str,
    sending_timeout_s: float,
    max_attempts: int,
) -> Outcome:
    """Claim, send and record one email. Commits the claim before the SMTP conversation.

    Returns ``sent``, ``failed`` (5xx reply or attempts exhausted: recorded on the row, not
    retried) or ``skipped`` (sent, failed or held by another sender). Raises
    :class:`SmtpTransientError` after putting the row back in the queue, so the message is
    retried with backoff.
    """
    sending = Sending(mailer=mailer, sender=sender, sending_timeout_s=sending_timeout_s,
                      max_attempts=max_attempts, clock=clock)  # fmt: skip
    now = clock()
    token = str(uuid.uuid4())
    stale_before = now - timedelta(seconds=sending_timeout_s)
    claimed = claim_rows(session, [email_id], token=token, now=now, stale_before=stale_before)
    session.commit()
    if not claimed:
        EMAIL_METRICS.get().claims_skipped.inc()
        log.info("email_not_claimed", email_id=email_id)
        return "skipped"
    done = send_claimed(claimed, token, session=session, sending=sending, own=email_id)
    return own_outcome(done, email_id)


def own_outcome(done: Delivery, email_id: int) -> Outcome:
    """The outcome of the message's own email in ``done`` (``send_claimed(own=email_id)``)."""
    return "sent" if email_id in done.sent else "failed"


def send_claimed(
    claimed: Sequence[Any],
    token: str,
    *,
    session: Session,
    sending: Sending,
    retry: Callable[[list[int]], None] | None = None,
    own: int | None = None,
    and_then: Callable[[Delivery], None] | None = None,
) -> Delivery:
    """Send rows claimed (and committed) with ``token`` on this thread's connection and
    settle each; the one settle path of every sender (one email, a page, a run with others
    taken along). Commits as it goes; ``and_then(done)`` runs in the transaction that
    records the last outcomes (a page claims its next part there: one commit per part).

    Each row ends in one of these ways:

    * **sent**: marked every :data:`MARK_EVERY` emails, waiting out a short database outage
      (:func:`record_patiently`); a failure of ``and_then`` never undoes the marks
      (:func:`_mark_sent`);
    * **failed**: a 5xx reply, or the attempts are used up; recorded, never retried;
    * **retried later**: a transient reply, or anything unexpected while sending; put back in
      the queue and given to ``retry`` (which records a ``send_email`` message per id in the
      session's transaction), so it is retried alone with ``send_email``'s backoff;
    * **SMTP down** (no answer at all: refused, timed out): that row and every later one go
      back to the queue (the later ones untried) and to ``retry``, as the rest would each
      wait up to the SMTP timeout.

    ``own`` is the email whose message this run is (sent first): it is not given to
    ``retry``. Its transient failure is raised once the others are settled, and anything
    unexpected at once (the others go back untried), so dramatiq retries and dead-letters
    that message alone.
    """
    rows = sorted(claimed, key=lambda row: row.id != own)  # the own email first
    done = Delivery()
    unmarked: list[int] = []
    raised: SmtpTransientError | None = None
    for n, row in enumerate(rows):
        outcome, error = _attempt(row, token, session, sending)
        if row.id == own and error is not None:
            if not isinstance(error, SmtpTransientError):
                # The transaction may be broken. (An interrupt such as a time limit is not
                # caught: it leaves the rows to the sweep, as a crash would.)
                session.rollback()
                requeue_untried(rows[n + 1 :], token, session=session, sending=sending,
                                retry=retry)  # fmt: skip
                raise error
            raised = error
        elif outcome == "unexpected":
            assert error is not None, "_attempt gives an unexpected outcome with its error"
            # Its reason only: a database error's statement and values stay out of last_error.
            _requeue(session, row, token, failure_reason(error), sending)
            done.retried.append(row.id)
        elif outcome in ("retried", "down"):
            done.retried.append(row.id)
        elif outcome == "failed":
            done.failed.append(row.id)
        else:
            unmarked.append(row.id)
            if len(unmarked) >= MARK_EVERY and n < len(rows) - 1:  # the last are marked below
                _mark_sent(session, unmarked, token, sending.clock())
                done.sent += unmarked
                unmarked = []
        if outcome == "down":
            done.server_down = True
            for rest in rows[n + 1 :]:
                _requeue(session, rest, token, NOT_TRIED, sending)
                done.retried.append(rest.id)
            break
    done.sent += unmarked
    retry_alone = retry
    if done.retried:
        assert retry_alone is not None, "only the own email may be retried without a retry callback"

    def follow() -> None:
        if done.retried and retry_alone is not None:
            retry_alone(done.retried)
        if and_then is not None:
            and_then(done)

    _mark_sent(session, unmarked, token, sending.clock(), also=follow)
    EMAIL_METRICS.get().sent.inc(len(done.sent))
    log.info("emails_delivered", sent=len(done.sent), failed=done.failed, retried=done.retried)
    if raised is not None:
        raise raised
    return done


def requeue_untried(
    claimed: Sequence[Any],
    token: str,
    *,
    session: Session,
    sending: Sending,
    retry: Callable[[list[int]], None] | None,
) -> None:
    """Put rows claimed with ``token`` back in the queue untried, each with its own retry
    message (the server did not answer, or their sender failed before reaching them)."""
    if not claimed:
        return
    assert retry is not None, "only the own email may be retried without a retry callback"
    for row in claimed:
        _requeue(session, row, token, NOT_TRIED, sending)
    retry([row.id for row in claimed])
    session.commit()


def _attempt(
    row: Any, token: str, session: Session, sending: Sending
) -> tuple[str, BaseException | None]:
    """Send one claimed row: ``sent``, or ``failed``/``retried`` already recorded on it
    (``down``: retried, and the server gave no answer at all), with the transient error;
    or ``unexpected`` with the error, the row still claimed."""
    metrics = EMAIL_METRICS.get()
    if row.attempts > sending.max_attempts:
        # Earlier attempts ended without an SMTP answer (the worker died or crashed).
        reply = f"gave up after {sending.max_attempts} attempts; last error: {row.last_error}"
        return _fail(session, row, token, reply, "attempts_exhausted", sending), None
    started = time.perf_counter()
    try:
        send_row(sending.mailer, row, sender=sending.sender)
    except SmtpPermanentError as exc:
        metrics.send_errors.labels("permanent").inc()
        return _fail(session, row, token, exc.reply, "rejected", sending), None
    except SmtpTransientError as exc:
        metrics.send_errors.labels("transient").inc()
        if row.attempts >= sending.max_attempts:
            reply = f"gave up after {row.attempts} attempts; last error: {exc.reply}"
            return _fail(session, row, token, reply, "attempts_exhausted", sending), None
        _requeue(session, row, token, exc.reply, sending)
        return ("down" if exc.code is None else "retried"), exc
    except Exception as exc:  # noqa: BLE001 - one bad row must not stop the others: the caller retries it alone
        return "unexpected", exc
    finally:
        metrics.send_duration.observe(time.perf_counter() - started)
    return "sent", None


def _set(session: Session, ids: list[int], token: str, **values: object) -> int:
    statement = _TABLE.update().where(_C.id.in_(ids), _C.claim_token == token).values(**values)
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def _mark_sent(
    session: Session,
    ids: list[int],
    token: str,
    now: datetime,
    *,
    also: Callable[[], None] | None = None,
) -> None:
    """Record emails the server accepted, and run ``also`` (a page's next claim, retry
    messages) in the same commit: one commit per part.

    Why the marks never depend on ``also``: when ``also`` or that commit fails (a claim's
    error, a time limit), the rollback takes the marks with it, and the sweep would send
    those emails again. They are then recorded alone first (:func:`record_sent`); after them
    ``also`` is run again if a database error failed it, and anything else is raised.
    """

    def mark() -> bool:
        return not ids or (
            _set(session, ids, token, status=EmailStatus.SENT, sent_at=now, updated_at=now)
            == len(ids)
        )

    if also is None:
        marked = record_sent(session, mark, ids)
    else:
        try:
            marked = mark()
            also()
            session.commit()
        # Even an interrupt (a time limit): the marks first, then it is raised.
        except BaseException as exc:
            session.rollback()
            marked = record_sent(session, mark, ids)
            if not isinstance(exc, SQLAlchemyError):
                raise
            record_patiently(session, also)
    if not marked:
        log.warning("email_claim_lost", email_ids=ids)


def record_sent(
    session: Session,
    mark: Callable[[], bool],
    ids: list[int],
    *,
    patience_s: float = RECORD_SENT_PATIENCE_S,
) -> bool:
    """Commit the sent marks ``mark`` writes for ``ids``, in a transaction of their own,
    waiting out a database error that passes for up to ``patience_s`` seconds (see
    :func:`record_patiently`); ``mark``'s result.

    If the database never takes them, one line names the emails the SMTP server accepted
    and what happens to them (the sweep sends them again), and the error is raised.
    """
    if not ids:
        return True
    try:
        return record_patiently(session, mark, patience_s=patience_s)
    except SQLAlchemyError as exc:
        log.error(
            "email_sent_not_recorded",
            email_ids=ids,
            error=failure_reason(exc),
            hint="the SMTP server accepted these emails but the database refused their sent "
            f"mark (an outage is waited out for up to {patience_s:g} s): they stay 'sending', "
            "and the sweep sends them again (same Message-ID) once the sending timeout has "
            "passed",
        )
        raise


def _fail(session: Session, row: Any, token: str, reply: str, reason: str, s: Sending) -> str:
    _set(session, [row.id], token, status=EmailStatus.FAILED,
         last_error=reply[:MAX_ERROR_LENGTH], updated_at=s.clock())  # fmt: skip
    EMAIL_METRICS.get().failed.labels(reason).inc()
    log.error("email_failed", email_id=row.id, reason=reason, error=reply, attempt=row.attempts)
    return "failed"


def _requeue(session: Session, row: Any, token: str, reply: str, s: Sending) -> None:
    later = s.clock()
    _set(session, [row.id], token, status=EmailStatus.QUEUED, claim_token=None,
         last_error=reply[:MAX_ERROR_LENGTH], dispatch_after=later + REDISPATCH_AFTER,
         updated_at=later)  # fmt: skip
    log.warning("email_send_deferred", email_id=row.id, attempt=row.attempts, error=reply)


def record_patiently(
    session: Session,
    write: Callable[[], _T],
    *,
    patience_s: float = RECORD_SENT_PATIENCE_S,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """Run ``write`` and commit, retrying on a database error that passes (:data:`_PASSING`);
    its result.

    Why: an email the SMTP server accepted but whose ``sent`` was not recorded stays claimed
    until the claim expires, and the sweep then sends it again. A database that is away for
    a few seconds (a restart, a fail-over), a pool with no free connection (SQLAlchemy's
    ``TimeoutError``) or a connection lost mid-transaction (``InterfaceError``) must not turn
    into a second copy, so the sender waits, up to ``patience_s`` seconds, before giving up
    (the error is raised and the message retried).
    """
    deadline = time.monotonic() + patience_s
    pause_s = 0.5
    while True:
        try:
            result = write()
            session.commit()
            return result
        except _PASSING as exc:
            session.rollback()
            if time.monotonic() + pause_s > deadline:
                raise
            if _WAITING_NOTICE.due():
                log.warning(
                    "email_outcome_waiting_for_database",
                    error=failure_reason(exc),
                    hint="the database does not answer or has no free connection: start it, "
                    "fix BGW_DATABASE_URL or raise its pool size; "
                    f"sent emails are recorded once it answers (up to {patience_s:g} s)",
                    similar_held_back=_WAITING_NOTICE.held_back,
                )
            sleep(pause_s)
            pause_s = min(pause_s * 2, 5.0)


@dataclass(frozen=True)
class SweepResult:
    recovered: int
    dispatched: int


def sweep_outbox(
    *,
    session: Session,
    now: datetime,
    sending_timeout_s: float,
    dispatch: Callable[[list[int]], None],
    dispatch_tried: Callable[[list[int]], None],
    page_size: int = 500,
    max_rows: int = 100_000,
) -> SweepResult:
    """Recover stalled sends and hand every waiting email on, page by page.

    Each page is a list of at most ``page_size`` ids: it is stamped (``dispatch_after`` moves
    ahead, so the page leaves the query's range) and handed on in the same transaction, then
    committed: the never-tried emails to ``dispatch`` (pages of messages), those tried before
    to ``dispatch_tried`` (a message each), as a page message skips a tried email
    (:data:`bgworkers.email.batch.PAGE_CLAIMABLE`).
    Memory stays bounded by one page whatever the outbox holds; ``max_rows`` bounds one run.
    """
    stale_before = now - timedelta(seconds=sending_timeout_s)
    recovered = session.execute(
        update(OutboxEmail)
        .where(
            col(OutboxEmail.status) == EmailStatus.SENDING,
            col(OutboxEmail.claimed_at) < stale_before,
        )
        .values(
            status=EmailStatus.QUEUED,
            claim_token=None,
            dispatch_after=now,
            last_error="the sender stopped before finishing; queued again",
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.commit()
    if recovered:
        EMAIL_METRICS.get().recovered.inc(recovered)
        log.warning("email_sends_recovered", count=recovered)
    dispatched = 0
    while dispatched < max_rows:
        rows = list(
            session.exec(
                select(OutboxEmail.id, OutboxEmail.attempts)
                .where(
                    col(OutboxEmail.status) == EmailStatus.QUEUED,
                    col(OutboxEmail.dispatch_after) <= now,
                )
                .order_by(col(OutboxEmail.dispatch_after))
                .limit(min(page_size, max_rows - dispatched))
                .with_for_update(skip_locked=True)
            ).all()
        )
        if not rows:
            break
        page = [i for i, _ in rows if i is not None]
        tried = {i for i, attempts in rows if i is not None and attempts > 0}
        session.execute(
            update(OutboxEmail)
            .where(col(OutboxEmail.id).in_(page))
            .values(dispatch_after=now + REDISPATCH_AFTER)
            .execution_options(synchronize_session=False)
        )
        # In the transaction that stamps them: the outbox publishes on commit.
        if tried:
            dispatch_tried([i for i in page if i in tried])
        if len(tried) < len(page):
            dispatch([i for i in page if i not in tried])
        session.commit()
        dispatched += len(page)
        EMAIL_METRICS.get().dispatched.inc(len(page))
    return SweepResult(recovered=recovered, dispatched=dispatched)
