"""Emails by the page: written with one statement, delivered at once over one SMTP connection.

Why: a fan-out (the daily summaries, a minute of reminders) wrote one email per transaction
and then one ``send_email`` message per email, each with its own claim, commit, NOOP and
final commit; and those messages queued behind every other step of the fan-out, so the first
summary left only after the last one was written. Here the step that writes a page of
emails delivers them right after its commit, on the same thread and connection, so emails go
out while later pages are still being written.

The guarantees of :mod:`bgworkers.email.outbox` hold row by row:

* **One row per key**: :func:`add_emails` inserts ``ON CONFLICT (idempotency_key) DO
  NOTHING`` and reports only the rows it wrote; an invalid draft is refused alone.
* **Atomic claim**: :func:`deliver_emails` claims the page with one conditional UPDATE and
  commits before talking to SMTP; a row someone else holds or sent is skipped.
* **At least once in the end**: the rows are written ``queued`` with ``dispatch_after`` one
  minute ahead (:data:`INLINE_REDISPATCH_AFTER`): if the process dies between the commit and
  the delivery, the sweep (every 5 minutes) hands them to ``send_email``. An email whose
  delivery fails transiently, or raises anything unexpected, is put back in the queue and
  given to ``retry`` (one ``send_email`` message each): it is retried alone, with
  ``send_email``'s backoff and dead-lettering, while the rest of the page goes on.
* **The window**: sent rows are marked every :data:`MARK_EVERY` emails, so a crash in the
  middle of a page may send up to that many emails twice (same ``Message-ID``) after the
  sending timeout, where one ``send_email`` could send one.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from bgworkers.db.engine import insert_with_on_conflict
from bgworkers.email.metrics import EMAIL_METRICS
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.outbox import (
    MAX_ERROR_LENGTH,
    REDISPATCH_AFTER,
    InvalidEmail,
    claim_rows,
    record_patiently,
    send_row,
    validate_email_fields,
)
from bgworkers.email.smtp import Mailer, SmtpPermanentError, SmtpTransientError
from bgworkers.logs.loggers import get_logger

log = get_logger(__name__)

#: How long a row written by :func:`add_emails` waits before the sweep may take it: the
#: writer delivers it within seconds, this only covers a writer that died.
INLINE_REDISPATCH_AFTER = timedelta(minutes=1)
#: Sent rows are marked (and committed) every this many emails of a page.
MARK_EVERY = 10
#: ``last_error`` of the emails of a page left untried after the SMTP server did not answer.
NOT_TRIED = "not tried: the SMTP server did not answer for an earlier email of the page"

_TABLE = OutboxEmail.__table__  # type: ignore[attr-defined]
_C = _TABLE.c


@dataclass(frozen=True)
class Draft:
    """One email to write: the fields of :func:`bgworkers.email.api.enqueue_email`."""

    recipient: str
    subject: str
    text: str
    key: str
    html: str | None = None


def add_emails(session: Session, drafts: Sequence[Draft], *, now: datetime) -> dict[str, int]:
    """Write the drafts in one INSERT; return ``{key: id}`` of the rows written now.

    A key that exists is left alone (not in the result); an invalid draft is logged and
    left out, so it cannot keep the others from being written.
    """
    rows: list[dict[str, Any]] = []
    for draft in drafts:
        try:
            validate_email_fields(
                recipient=draft.recipient, subject=draft.subject, text=draft.text, key=draft.key
            )
        except InvalidEmail as exc:
            log.error("email_refused", key=draft.key, error=str(exc))
            continue
        rows.append(_row(draft, now))
    if not rows:
        return {}
    statement = _insert(session.get_bind().dialect.name)
    written = {str(key): int(email_id) for key, email_id in session.execute(statement, rows)}
    EMAIL_METRICS.get().enqueued.inc(len(written))
    return written


@functools.cache
def _insert(dialect: str) -> Any:
    """Built once per dialect and run as an executemany (one cached compiled statement)."""
    insert = insert_with_on_conflict(dialect)(_TABLE)
    return insert.on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(
        _C.idempotency_key, _C.id
    )


def _row(draft: Draft, now: datetime) -> dict[str, Any]:
    return {
        "idempotency_key": draft.key,
        "recipient": draft.recipient,
        "subject": draft.subject,
        "body_text": draft.text,
        "body_html": draft.html,
        "status": EmailStatus.QUEUED,
        "attempts": 0,
        "dispatch_after": now + INLINE_REDISPATCH_AFTER,
        "created_at": now,
        "updated_at": now,
    }


@dataclass
class Delivery:
    """What :func:`deliver_emails` did with a page, by email id."""

    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    skipped: int = 0


@dataclass(frozen=True)
class Sending:
    """How to send: the process's mailer and the outbox settings."""

    mailer: Mailer
    sender: str
    sending_timeout_s: float
    max_attempts: int
    clock: Callable[[], datetime]


def deliver_emails(
    email_ids: Sequence[int],
    *,
    session: Session,
    sending: Sending,
    retry: Callable[[list[int]], None],
) -> Delivery:
    """Claim, send and record a page of emails on this thread's SMTP connection.

    ``retry`` records a ``send_email`` message per id in the session's transaction (the
    outbox), for the emails that failed transiently. Commits as it goes.
    """
    if not email_ids:
        return Delivery()
    token = str(uuid.uuid4())
    claimed = _claim(session, email_ids, token, sending)
    session.commit()
    done = send_claimed_page(claimed, token, session=session, sending=sending, retry=retry)
    done.skipped = len(email_ids) - len(claimed)
    return done


def send_claimed_page(
    claimed: Sequence[Any],
    token: str,
    *,
    session: Session,
    sending: Sending,
    retry: Callable[[list[int]], None],
) -> Delivery:
    """Send rows claimed (and committed) with ``token``, one by one on this thread's
    connection; see :func:`deliver_emails`."""
    done = Delivery()
    metrics = EMAIL_METRICS.get()
    unmarked: list[int] = []
    for n, row in enumerate(claimed):
        outcome = _send_one(row, token, session, sending)
        if outcome == "down":
            # No SMTP answer at all (refused, timed out): the rest would wait the same way,
            # each up to the SMTP timeout. They go back to the queue untried, retried alone.
            done.retried.append(row.id)
            for rest in claimed[n + 1 :]:
                _requeue(session, rest, token, NOT_TRIED, sending)
                done.retried.append(rest.id)
            break
        if outcome == "sent":
            unmarked.append(row.id)
            if len(unmarked) >= MARK_EVERY:
                _mark_sent(session, unmarked, token, sending.clock())
                done.sent += unmarked
                unmarked = []
        else:
            getattr(done, outcome).append(row.id)
    _mark_sent(session, unmarked, token, sending.clock())
    done.sent += unmarked
    if done.retried:
        retry(done.retried)
    session.commit()
    metrics.sent.inc(len(done.sent))
    log.info("emails_delivered", sent=len(done.sent), failed=done.failed, retried=done.retried)
    return done


def requeue_untried(
    claimed: Sequence[Any],
    token: str,
    *,
    session: Session,
    sending: Sending,
    retry: Callable[[list[int]], None],
) -> None:
    """Put rows claimed with ``token`` back in the queue untried, each with its own retry
    message (the server did not answer, or their sender failed before reaching them)."""
    if not claimed:
        return
    for row in claimed:
        _requeue(session, row, token, NOT_TRIED, sending)
    retry([row.id for row in claimed])
    session.commit()


def _claim(session: Session, email_ids: Sequence[int], token: str, sending: Sending) -> list[Any]:
    now = sending.clock()
    stale_before = now - timedelta(seconds=sending.sending_timeout_s)
    return claim_rows(session, list(email_ids), token=token, now=now, stale_before=stale_before)


def _send_one(row: Any, token: str, session: Session, sending: Sending) -> str:
    """Send one claimed row; ``sent``, or ``failed``/``retried`` already recorded on it
    (``down``: retried, and the server gave no answer at all)."""
    metrics = EMAIL_METRICS.get()
    if row.attempts > sending.max_attempts:
        reply = f"gave up after {sending.max_attempts} attempts; last error: {row.last_error}"
        return _fail(session, row, token, reply, "attempts_exhausted", sending)
    started = time.perf_counter()
    try:
        send_row(sending.mailer, row, sender=sending.sender)
    except SmtpPermanentError as exc:
        metrics.send_errors.labels("permanent").inc()
        return _fail(session, row, token, exc.reply, "rejected", sending)
    except SmtpTransientError as exc:
        metrics.send_errors.labels("transient").inc()
        if row.attempts >= sending.max_attempts:
            reply = f"gave up after {row.attempts} attempts; last error: {exc.reply}"
            return _fail(session, row, token, reply, "attempts_exhausted", sending)
        outcome = _requeue(session, row, token, exc.reply, sending)
        return "down" if exc.code is None else outcome
    except Exception as exc:  # noqa: BLE001 - one bad row must not stop the page: retried alone
        return _requeue(session, row, token, f"{type(exc).__name__}: {exc}", sending)
    finally:
        metrics.send_duration.observe(time.perf_counter() - started)
    return "sent"


def _set(session: Session, ids: list[int], token: str, **values: object) -> None:
    statement = _TABLE.update().where(_C.id.in_(ids), _C.claim_token == token).values(**values)
    session.execute(statement)


def _mark_sent(session: Session, ids: list[int], token: str, now: datetime) -> None:
    """Record emails the server accepted; waits out a short database outage (see
    :func:`~bgworkers.email.outbox.record_patiently`)."""
    if ids:

        def write() -> bool:
            _set(session, ids, token, status=EmailStatus.SENT, sent_at=now, updated_at=now)
            return True

        record_patiently(session, write)


def _fail(session: Session, row: Any, token: str, reply: str, reason: str, s: Sending) -> str:
    _set(session, [row.id], token, status=EmailStatus.FAILED,
         last_error=reply[:MAX_ERROR_LENGTH], updated_at=s.clock())  # fmt: skip
    EMAIL_METRICS.get().failed.labels(reason).inc()
    log.error("email_failed", email_id=row.id, reason=reason, error=reply, attempt=row.attempts)
    return "failed"


def _requeue(session: Session, row: Any, token: str, reply: str, s: Sending) -> str:
    later = s.clock()
    _set(session, [row.id], token, status=EmailStatus.QUEUED, claim_token=None,
         last_error=reply[:MAX_ERROR_LENGTH], dispatch_after=later + REDISPATCH_AFTER,
         updated_at=later)  # fmt: skip
    log.warning("email_send_deferred", email_id=row.id, attempt=row.attempts, error=reply)
    return "retried"
