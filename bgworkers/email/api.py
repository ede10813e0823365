"""What the rest of the application (and the other domains) call to send an email.

``enqueue_email`` writes the email in the caller's transaction: if the caller rolls back,
no email goes out; once it commits, a ``send_email`` message follows so the email leaves
within seconds. Calling it again with the same ``idempotency_key`` returns the first email
and sends nothing more, so callers may retry freely. ``cancel_queued_emails`` withdraws the
emails of a caller's keys that have not left yet; ``is_email_address`` says whether an address
can be sent to at all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col

from bgworkers.db import after_commit, utcnow
from bgworkers.email.actors import dispatch_emails
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.outbox import InvalidEmail, add_email, is_email_address

__all__ = [
    "InvalidEmail",
    "cancel_queued_emails",
    "enqueue_email",
    "is_email_address",
    "send_queued_email",
]


def send_queued_email(email_id: int) -> None:
    """Send the ``send_email`` message of an outbox email (after the commit that wrote it)."""
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
    dispatch: Callable[[int], None] = send_queued_email,
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


def cancel_queued_emails(
    *, session: Session, key_prefix: str, reason: str, now: datetime | None = None
) -> int:
    """Mark ``failed`` (with ``reason``) every email still ``queued`` whose idempotency key
    starts with ``key_prefix``, so it is never sent; returns how many.

    An email already being sent, or sent, is left alone. Works in the caller's transaction.
    """
    result = session.execute(
        update(OutboxEmail)
        .where(
            col(OutboxEmail.idempotency_key).startswith(key_prefix, autoescape=True),
            col(OutboxEmail.status) == EmailStatus.QUEUED,
        )
        .values(status=EmailStatus.FAILED, last_error=reason, updated_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    count: int = result.rowcount  # type: ignore[attr-defined]
    return count
