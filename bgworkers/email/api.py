"""What the rest of the application calls to send an email.

``enqueue_email`` writes the email, and its ``send_email`` message (through the message
outbox), in the caller's transaction: if the caller rolls back, no email goes out; once it
commits, the relay publishes the message within a second, RabbitMQ up or not at that
instant. Calling it again with the same ``idempotency_key`` returns the first email and
sends nothing more, so callers may retry freely.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlmodel import Session

from bgworkers.db import utcnow
from bgworkers.email.actors import send_email
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.outbox import InvalidEmail, add_email
from bgworkers.outbox import enqueue
from bgworkers.outbox.keys import bounded_key

__all__ = ["InvalidEmail", "enqueue_email"]


def enqueue_email(
    *,
    session: Session,
    recipient: str,
    subject: str,
    text: str,
    idempotency_key: str,
    html: str | None = None,
    now: datetime | None = None,
    dispatch: Callable[[int], None] | None = None,
) -> OutboxEmail:
    """Queue an email (raises :class:`InvalidEmail` for bad fields); see the module doc.

    Only for a new row, its ``send_email`` message is written to the outbox, or, when
    ``dispatch`` is given, ``dispatch`` is called with the email's id, in the transaction.
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
        if dispatch is None:
            # The key: a second message for one email would find it claimed anyway.
            key = bounded_key(f"send_email:{idempotency_key}")
            enqueue(session, send_email, email_id, dedupe_key=key)
        else:
            dispatch(email_id)
    return row
