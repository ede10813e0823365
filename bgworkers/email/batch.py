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
* **The window**: sent rows are marked every :data:`~bgworkers.email.outbox.MARK_EVERY`
  emails, so a crash in the middle of a page may send up to that many emails twice (same
  ``Message-ID``) after the sending timeout, where one ``send_email`` could send one.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from bgworkers.db.engine import insert_with_on_conflict
from bgworkers.email.metrics import EMAIL_METRICS
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.outbox import (
    Delivery,
    InvalidEmail,
    Sending,
    claim_rows,
    send_claimed,
    validate_email_fields,
)
from bgworkers.logs.loggers import get_logger

log = get_logger(__name__)

#: How long a row written by :func:`add_emails` waits before the sweep may take it: the
#: writer delivers it within seconds, this only covers a writer that died.
INLINE_REDISPATCH_AFTER = timedelta(minutes=1)

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


def deliver_emails(
    email_ids: Sequence[int],
    *,
    session: Session,
    sending: Sending,
    retry: Callable[[list[int]], None],
) -> Delivery:
    """Claim, send and record a page of emails on this thread's SMTP connection.

    ``retry`` records a ``send_email`` message per id in the session's transaction (the
    outbox), for the emails that failed transiently. Commits as it goes; each email is
    settled by :func:`bgworkers.email.outbox.send_claimed`.
    """
    if not email_ids:
        return Delivery()
    token = str(uuid.uuid4())
    now = sending.clock()
    stale_before = now - timedelta(seconds=sending.sending_timeout_s)
    claimed = claim_rows(session, list(email_ids), token=token, now=now, stale_before=stale_before)
    session.commit()
    done = send_claimed(claimed, token, session=session, sending=sending, retry=retry)
    done.skipped = len(email_ids) - len(claimed)
    return done
