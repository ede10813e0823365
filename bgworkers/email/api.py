"""What the rest of the application calls to send an email.

``enqueue_email`` writes the email in the caller's transaction: if the caller rolls back,
no email goes out; once it commits, a ``send_email`` message follows so the email leaves
within seconds. Calling it again with the same ``idempotency_key`` returns the first email
and sends nothing more, so callers may retry freely.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlmodel import Session

from bgworkers.db import after_commit, utcnow
from bgworkers.email.actors import dispatch_emails
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.outbox import InvalidEmail, add_email

__all__ = ["InvalidEmail", "enqueue_email"]


def _send_now(email_id: int) -> None:
    dispatch_emails([email_id])


def enqueue_email(
    *,
    session: Session,
    recipient: str,
    subject: str,
    text: str,
    idempotency_key: str,
    html: str | None = None,
    now: datetime | None = None,
    dispatch: Callable[[int], None] = _send_now,
) -> OutboxEmail:
    """Queue an email (raises :class:`InvalidEmail` for bad fields); see the module doc.

    ``dispatch`` is called with the email's id after the commit, only for a new row.
    """
    row, created = add_email(
        session=session,
        recipient=recipient,
        subject=subject,
        text=text,
        html=html,
        idempotency_key=idempotency_key,
        now=now or utcnow(),
    )
    if created and row.status == EmailStatus.QUEUED:
        session.flush()
        email_id = row.id
        assert email_id is not None
        after_commit(session, lambda: dispatch(email_id))
    return row
