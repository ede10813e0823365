"""What the rest of the application (and the other domains) call to send an email.

``add_emails`` and ``deliver_now`` are the same by the page, for a job that writes many
emails: one INSERT for the page, and the job delivers them itself right after its commit
(see :mod:`bgworkers.email.batch`).

``enqueue_email`` writes the email, and its message (through the message outbox), in the
caller's transaction: if the caller rolls back, no email goes out; once it commits, the
relay publishes the message within a second, RabbitMQ up or not at that instant. The
emails one transaction queues leave as pages, one ``send_email_page`` message per 50
(:mod:`bgworkers.email.paging`). Calling it again with the same ``idempotency_key``
returns the first email and sends nothing more, so callers may retry freely.
``urgent=True`` sends it on the ``urgent`` lane (time-critical email: a reminder, a sign-in
code), which no backlog of ordinary email delays. ``cancel_queued_emails`` withdraws the
emails of a caller's keys that have not left yet; ``is_email_address`` says whether an
address can be sent to at all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlmodel import Session, col

from bgworkers.db.engine import utcnow
from bgworkers.email.actors import (
    dispatch_emails,
    dispatch_emails_later,
    send_email,
    send_urgent_email,
)
from bgworkers.email.batch import Draft, add_emails, deliver_emails
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.outbox import Delivery, InvalidEmail, Sending, add_email, is_email_address
from bgworkers.email.paging import note_for_page
from bgworkers.email.smtp import get_mailer
from bgworkers.outbox import enqueue
from bgworkers.outbox.keys import bounded_key
from bgworkers.settings import get_settings

__all__ = [
    "Delivery",
    "Draft",
    "InvalidEmail",
    "add_emails",
    "cancel_queued_emails",
    "deliver_now",
    "enqueue_email",
    "is_email_address",
]


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
    urgent: bool = False,
) -> OutboxEmail:
    """Queue an email (raises :class:`InvalidEmail` for bad fields); see the module doc.

    Only for a new row, its message is written to the outbox in the transaction: when it
    commits, with the other emails the transaction queued, as ``send_email_page`` messages
    (``send_email`` for an email queued alone; :mod:`bgworkers.email.paging`); at once, as
    ``send_urgent_email``, when ``urgent``. When ``dispatch`` is given, ``dispatch`` is
    called with the email's id instead. A re-dispatch by the sweep uses the bulk lane.
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
        if dispatch is not None:
            dispatch(email_id)
        elif urgent:
            _record_one(session, email_id, idempotency_key, actor=send_urgent_email)
        elif not _commits_its_own_transaction(session):
            _record_one(session, email_id, idempotency_key)
        else:
            note_for_page(session, email_id, idempotency_key,
                          record_one=_record_one, record_many=dispatch_emails)  # fmt: skip
    return row


def _commits_its_own_transaction(session: Session) -> bool:
    """Whether the session's commit is the one that commits its rows.

    Why: pages are recorded when the session commits. A session given an application's
    ``Connection`` (``Session(bind=connection)``) may only flush, or only release a savepoint,
    and leave the commit to the application: such a transaction would commit its emails with
    no message. Those sessions record each email's message at once, as before pages.
    """
    return not isinstance(session.get_bind(OutboxEmail), Connection)


def _record_one(
    session: Session, email_id: int, idempotency_key: str, *, actor: Any = send_email
) -> None:
    # The key: a second message for one email would find it claimed anyway.
    key = bounded_key(f"send_email:{idempotency_key}")
    enqueue(session, actor, email_id, dedupe_key=key)


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


def deliver_now(session: Session, email_ids: list[int], *, urgent: bool = False) -> Delivery:
    """Deliver emails written by :func:`add_emails` (committed) on this thread's connection.

    Call it after the commit that wrote them. An email that fails transiently is handed to
    its own ``send_email`` message (``send_urgent_email`` when ``urgent``: the urgent lane)
    through the outbox, and retried alone.
    """
    settings = get_settings()
    sending = Sending(
        mailer=get_mailer(settings),
        sender=settings.email_from,
        sending_timeout_s=settings.email_sending_timeout_s,
        max_attempts=settings.email_max_attempts,
        clock=utcnow,
    )
    return deliver_emails(
        email_ids,
        session=session,
        sending=sending,
        retry=functools.partial(dispatch_emails_later, session, urgent=urgent),
    )
