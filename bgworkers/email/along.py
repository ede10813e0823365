"""A ``send_email`` run takes a few other waiting emails along on its SMTP connection.

Why: an application that queues many emails one transaction at a time gets one
``send_email`` message per email (the emails of one transaction leave as pages instead,
:mod:`bgworkers.email.paging`), and each paid a claim, a commit, the SMTP conversation, the
outcome and a second commit: plain email went out at a third of what the SMTP server takes.
Here one run claims its own email and up to :data:`ALONG` other *never tried* queued emails in
one statement, sends them over its connection and marks them sent in groups; the later
messages of those emails find them sent and only pay the claim.

What holds, row by row:

* **Exactly once**: the claim is one conditional UPDATE; its rows are picked with
  ``FOR UPDATE SKIP LOCKED`` (PostgreSQL), so concurrent runs take disjoint rows without
  waiting for each other (no deadlock), and each is re-checked by the UPDATE itself.
* **Retries stay per email**: only rows with ``attempts = 0`` are taken along, so an email
  waiting out its backoff is never tried early. A taken-along email that fails transiently
  (or raises anything unexpected) is put back and given its own delayed ``send_email``
  message (``retry``), as in a page (:func:`bgworkers.email.batch.deliver_emails`); its
  own earlier message may already have found it claimed and gone. The run's own email keeps
  ``send_email``'s path: a transient failure raises, after the others are settled, and
  dramatiq retries and dead-letters that message alone.
* **The window**: as for a page, a crash mid-run may send up to
  :data:`~bgworkers.email.outbox.MARK_EVERY` emails twice (same ``Message-ID``) after the
  sending timeout.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import and_, bindparam, select, union_all
from sqlmodel import Session

from bgworkers.email.metrics import EMAIL_METRICS
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.outbox import (
    CLAIMABLE,
    Outcome,
    Sending,
    claim_statement,
    own_outcome,
    run_claim,
    send_claimed,
)
from bgworkers.logs.loggers import get_logger

log = get_logger(__name__)

#: Other emails one ``send_email`` run may take along (about 2 ms each on a local server).
ALONG = 9

_TABLE = OutboxEmail.__table__  # type: ignore[attr-defined]
_C = _TABLE.c

#: The run's own email if it may be claimed, locked without waiting: a run never waits for
#: a row lock, so two runs that each hold the other's own email cannot deadlock. A lock on
#: it is held by a claim (which leaves it ``sending``), the sweep or a cancellation: each
#: leaves it to someone else, so the run treats it as not its to send.
_OWN = (
    select(_C.id)
    .where(_C.id == bindparam("own"), CLAIMABLE)
    .with_for_update(skip_locked=True)
    .subquery()
)

#: Never-tried queued emails, oldest dispatch first (the status/dispatch_after index).
_OTHERS = (
    select(_C.id)
    .where(_C.status == EmailStatus.QUEUED, _C.attempts == 0, _C.id != bindparam("own"))
    .order_by(_C.dispatch_after)
    .limit(ALONG)
    .with_for_update(skip_locked=True)
    .subquery()
)

#: Both picks, run once: a CTE kept ``MATERIALIZED`` (the planner could otherwise re-run a
#: pick for each row it joins, and a ``LIMIT`` re-run under ``SKIP LOCKED`` claims more).
_PICKED = (
    union_all(select(_OWN.c.id), select(_OTHERS.c.id)).cte("picked").prefix_with("MATERIALIZED")
)

#: The claim of the run's own email and of never-tried others, built once. The rows are
#: named by one ``IN`` over the picks, so the database reaches them by primary key: two
#: ``IN`` conditions joined by ``OR`` made PostgreSQL scan the whole table for every claim
#: (15.8 ms at 15,000 rows, and growing with the outbox; 0.4 ms now). The picks lock their
#: rows, so :data:`~bgworkers.email.outbox.CLAIMABLE` (which a never-tried queued email
#: is) holds when the UPDATE runs; it is checked again all the same.
_CLAIM = claim_statement(and_(_C.id.in_(select(_PICKED.c.id)), CLAIMABLE))


def deliver_email_along(
    email_id: int,
    *,
    session: Session,
    sending: Sending,
    retry: Callable[[list[int]], None],
) -> Outcome:
    """Claim ``email_id`` and up to :data:`ALONG` others, send them, record each outcome.

    Returns the own email's outcome (``skipped`` when someone else holds or sent it, the
    others are still sent); raises :class:`SmtpTransientError` for it as
    :func:`bgworkers.email.outbox.deliver_email` does. Every email is settled by
    :func:`bgworkers.email.outbox.send_claimed`.
    """
    token = str(uuid.uuid4())
    now = sending.clock()
    stale_before = now - timedelta(seconds=sending.sending_timeout_s)
    claimed = run_claim(session, _CLAIM, token=token, now=now, stale_before=stale_before,
                        own=email_id)  # fmt: skip
    session.commit()
    if not any(row.id == email_id for row in claimed):
        EMAIL_METRICS.get().claims_skipped.inc()
        log.info("email_not_claimed", email_id=email_id, taken_along=len(claimed))
        if claimed:
            send_claimed(claimed, token, session=session, sending=sending, retry=retry)
        return "skipped"
    done = send_claimed(claimed, token, session=session, sending=sending, retry=retry,
                        own=email_id)  # fmt: skip
    return own_outcome(done, email_id)
