"""Emails by the page: written with one statement, delivered at once over one SMTP connection.

Why: a fan-out (the daily summaries, a minute of reminders) wrote one email per transaction
and then one ``send_email`` message per email, each with its own claim, commit, NOOP and
final commit; and those messages queued behind every other step of the fan-out, so the first
summary left only after the last one was written. Here the step that writes a page of
emails delivers them right after its commit, on the same thread and connection, so emails go
out while later pages are still being written. ``send_email_page`` delivers the same way the
emails one transaction queued with ``enqueue_email`` (:mod:`bgworkers.email.paging`).

The guarantees of :mod:`bgworkers.email.outbox` hold row by row:

* **One row per key**: :func:`add_emails` inserts ``ON CONFLICT (idempotency_key) DO
  NOTHING`` and reports only the rows it wrote; an invalid draft is refused alone.
* **Atomic claim**: :func:`deliver_emails` claims the page a part
  (:data:`~bgworkers.email.outbox.MARK_EVERY` emails) at a time, with one conditional UPDATE
  committed before talking to SMTP; a row someone else holds or sent is skipped, and so is
  one tried before and waiting for its own retry message (:data:`PAGE_CLAIMABLE`). The next
  part is claimed in the transaction that settles the one before (one commit per part), so
  a page message delivered again after a crash sends the rows never claimed and skips the
  others. If that claim (or its commit) fails, the part's sent marks are committed alone
  first (:func:`bgworkers.email.outbox.record_sent`): a failed claim never undoes them.
* **At least once in the end**: the rows are written ``queued`` with ``dispatch_after`` one
  minute ahead (:data:`INLINE_REDISPATCH_AFTER`): if the process dies between the commit and
  the delivery, the sweep (every 5 minutes) hands them to ``send_email``. An email whose
  delivery fails transiently, or raises anything unexpected, is put back in the queue and
  given to ``retry`` (one ``send_email`` message each): it is retried alone, with
  ``send_email``'s backoff and dead-lettering, while the rest of the page goes on.
* **The window**: sent rows are marked once per part, so a crash in the middle of a page
  may send up to :data:`~bgworkers.email.outbox.MARK_EVERY` emails twice (same
  ``Message-ID``) after the sending timeout, where one ``send_email`` could send one.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, or_
from sqlmodel import Session

from bgworkers.db.engine import insert_with_on_conflict
from bgworkers.email.metrics import EMAIL_METRICS
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.outbox import (
    MARK_EVERY,
    Delivery,
    InvalidEmail,
    Sending,
    claim_statement,
    record_patiently,
    run_claim,
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

#: What a page may claim: a never-tried queued email, or one whose sender died (``sending``
#: past the timeout). Why not every queued email: one tried before and put back has its own
#: retry message, waiting out ``send_email``'s backoff; a page delivered again after a crash
#: would otherwise try it early. It is that message's to send (or, if the message is lost,
#: the sweep's, which hands tried emails to ``send_email`` one by one). A row the claim's
#: own token holds is taken again: a claim run again after its commit was made but its
#: answer lost finds its rows, instead of leaving them to the sweep after the timeout.
PAGE_CLAIMABLE = or_(
    and_(_C.status == EmailStatus.QUEUED, _C.attempts == 0),
    and_(_C.status == EmailStatus.SENDING, _C.claimed_at < bindparam("stale_before")),
    and_(_C.status == EmailStatus.SENDING, _C.claim_token == bindparam("token")),
)
_PAGE_CLAIM = claim_statement(and_(_C.id.in_(bindparam("ids", expanding=True)), PAGE_CLAIMABLE))


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
    hand_on: Callable[[list[int]], None] | None = None,
    slice_s: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Delivery:
    """Claim, send and record a page of emails on this thread's SMTP connection.

    The page is claimed :data:`~bgworkers.email.outbox.MARK_EVERY` emails (a part) at a
    time, each part settled by :func:`bgworkers.email.outbox.send_claimed`; the next part is
    claimed in the transaction that records the last outcomes of the one before (one commit
    per part), so a crash leaves at most one part claimed and unsent, and the rest ``queued``
    for a redelivery of the page to take. ``retry`` records a ``send_email`` message per id
    in the session's transaction (the outbox), for the emails that failed transiently, and
    for the whole rest of the page when the server gave no answer. ``hand_on``, when given,
    records the ids not yet claimed as a new page message once ``slice_s`` seconds have
    passed, so one page never holds a worker thread for long.
    """
    ids = sorted(set(email_ids))
    page = _Page(session=session, sending=sending, retry=retry, hand_on=hand_on,
                 slice_ends=monotonic() + slice_s if slice_s is not None else None,
                 monotonic=monotonic, rest=ids[MARK_EVERY:])  # fmt: skip
    claim: _Part | None = _claim_part(session, ids[:MARK_EVERY], sending)
    session.commit()
    done = Delivery()
    while claim is not None:
        page.next_token = str(uuid.uuid4())  # the next part's, whichever time it is claimed
        if claim.rows:
            part_done = send_claimed(claim.rows, claim.token, session=session, sending=sending,
                                     retry=retry, and_then=page.go_on)  # fmt: skip
        else:
            part_done = Delivery()
            record_patiently(session, functools.partial(page.go_on, Delivery()))
        part_done.skipped = claim.skipped
        done.add(part_done)
        claim = page.following
        if claim is None:
            if page.rest and part_done.server_down:
                done.retried += page.rest
            break
        page.rest = page.rest[MARK_EVERY:]
    return done


@dataclass
class _Page:
    """The rest of a page being delivered, and what follows each part of it."""

    session: Session
    sending: Sending
    retry: Callable[[list[int]], None]
    hand_on: Callable[[list[int]], None] | None
    slice_ends: float | None
    monotonic: Callable[[], float]
    rest: list[int]
    following: _Part | None = None
    next_token: str = ""

    def go_on(self, part_done: Delivery) -> None:
        """In the transaction of a part's last outcomes (run again if that is retried):
        claim the next part, or hand the rest on."""
        self.following = None
        if not self.rest:
            return
        if part_done.server_down:
            self.retry(self.rest)  # each retried alone, with send_email's backoff
        elif (
            self.hand_on is not None
            and self.slice_ends is not None
            and (self.monotonic() >= self.slice_ends)
        ):
            self.hand_on(self.rest)
            log.info("email_page_handed_on", handed_on=len(self.rest))
        else:
            self.following = _claim_part(
                self.session, self.rest[:MARK_EVERY], self.sending, token=self.next_token
            )


@dataclass(frozen=True)
class _Part:
    token: str
    rows: list[Any]
    skipped: int


def _claim_part(
    session: Session, email_ids: list[int], sending: Sending, *, token: str | None = None
) -> _Part:
    token = token or str(uuid.uuid4())
    now = sending.clock()
    stale_before = now - timedelta(seconds=sending.sending_timeout_s)
    rows = run_claim(session, _PAGE_CLAIM, token=token, now=now, stale_before=stale_before,
                     ids=email_ids)  # fmt: skip
    skipped = len(email_ids) - len(rows)
    if skipped:
        EMAIL_METRICS.get().claims_skipped.inc(skipped)
    return _Part(token=token, rows=rows, skipped=skipped)
