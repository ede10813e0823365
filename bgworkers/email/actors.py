"""Actors of the email domain: bulk delivery on ``email``, urgent delivery on the ``urgent`` lane.

``send_email`` and ``send_urgent_email`` do the same work; only the queue (and dramatiq's
in-process priority) differ, so an urgent email never waits behind a backlog of bulk ones.
``send_email_page`` delivers the emails one transaction queued (:mod:`bgworkers.email.paging`)
and the pages of the sweep.
"""

from __future__ import annotations

import functools

from sqlmodel import Session

from bgworkers import queues
from bgworkers.db.engine import session_scope, utcnow
from bgworkers.email.along import deliver_email_along
from bgworkers.email.batch import deliver_emails
from bgworkers.email.outbox import Sending, deliver_email, sweep_outbox
from bgworkers.email.paging import pages_of
from bgworkers.email.smtp import get_mailer
from bgworkers.outbox import enqueue_many
from bgworkers.settings import SEND_EMAIL_TIME_LIMIT_S, get_settings
from bgworkers.tasks import task


# Backoff 2 s doubling to 5 min over 8 retries (about 14 minutes in all), under RabbitMQ's
# consumer timeout; after that the sweep keeps re-dispatching until email_max_attempts.
@task(
    queue=queues.EMAIL,
    max_retries=8,
    min_backoff_ms=2_000,
    time_limit_ms=SEND_EMAIL_TIME_LIMIT_S * 1000,
)
def send_email(email_id: int) -> None:
    """Deliver one outbox email, and a few other waiting ones along with it
    (:mod:`bgworkers.email.along`); a duplicate message finds it claimed or sent."""
    with session_scope() as session:
        deliver_email_along(
            email_id,
            session=session,
            sending=_sending(),
            retry=functools.partial(dispatch_emails_later, session),
        )


def _sending() -> Sending:
    settings = get_settings()
    return Sending(
        mailer=get_mailer(settings),
        sender=settings.email_from,
        sending_timeout_s=settings.email_sending_timeout_s,
        max_attempts=settings.email_max_attempts,
        clock=utcnow,
    )


# The same policy as send_email; the urgent lane's priority puts it ahead of prefetched bulk.
@task(
    queue=queues.URGENT,
    max_retries=8,
    min_backoff_ms=2_000,
    time_limit_ms=SEND_EMAIL_TIME_LIMIT_S * 1000,
    priority=queues.URGENT_PRIORITY,
)
def send_urgent_email(email_id: int) -> None:
    """Deliver one urgent outbox email (a reminder, or ``enqueue_email(urgent=True)``),
    alone: taking bulk emails along would delay the next urgent one."""
    sending = _sending()
    with session_scope() as session:
        deliver_email(
            email_id,
            session=session,
            mailer=sending.mailer,
            clock=sending.clock,
            sender=sending.sender,
            sending_timeout_s=sending.sending_timeout_s,
            max_attempts=sending.max_attempts,
        )


#: Seconds a ``send_email_page`` sends before it hands the rest of its page on to a new
#: message: a bulk message holds a worker thread about as long as ten emails did, so an
#: urgent email in a group that consumes both lanes gets a thread soon.
PAGE_SLICE_S = 5.0


# The same policy as send_email: a page only raises when the database fails it (the claim).
@task(
    queue=queues.EMAIL,
    max_retries=8,
    min_backoff_ms=2_000,
    time_limit_ms=SEND_EMAIL_TIME_LIMIT_S * 1000,
)
def send_email_page(email_ids: list[int]) -> None:
    """Deliver a page of queued emails on this thread's connection; each email that fails
    transiently gets its own delayed ``send_email`` message, a duplicate finds them sent."""
    with session_scope() as session:
        deliver_emails(
            email_ids,
            session=session,
            sending=_sending(),
            retry=functools.partial(dispatch_emails_later, session),
            hand_on=functools.partial(dispatch_emails, session),
            slice_s=PAGE_SLICE_S,
        )


def dispatch_emails(session: Session, email_ids: list[int]) -> None:
    """Record one ``send_email_page`` message per page of ids in ``session``'s transaction
    (the outbox)."""
    enqueue_many(session, send_email_page, ((page,) for page in pages_of(email_ids)))


#: Milliseconds before a ``send_email`` retries an email a page could not deliver.
PAGE_RETRY_DELAY_MS = 2_000


def dispatch_emails_later(session: Session, email_ids: list[int], *, urgent: bool = False) -> None:
    """Like :func:`dispatch_emails`, delayed by :data:`PAGE_RETRY_DELAY_MS` (a retry); on the
    urgent lane when ``urgent``."""
    actor = send_urgent_email if urgent else send_email
    enqueue_many(
        session, actor, ((email_id,) for email_id in email_ids), delay_ms=PAGE_RETRY_DELAY_MS
    )


# Idempotent sweep: a failure is retried up to 3 times, then dead-lettered (and alerted).
@task(queue=queues.EMAIL, periodic=True, max_retries=3, time_limit_ms=240_000)
def process_email_queue() -> None:
    """Recover stalled sends and re-dispatch emails still queued; only fans out."""
    settings = get_settings()
    with session_scope() as session:
        sweep_outbox(
            session=session,
            now=utcnow(),
            sending_timeout_s=settings.email_sending_timeout_s,
            dispatch=functools.partial(dispatch_emails, session),
            dispatch_tried=functools.partial(dispatch_each, session),
        )


def dispatch_each(session: Session, email_ids: list[int]) -> None:
    """Record one ``send_email`` message per id in ``session``'s transaction (the outbox):
    for emails tried before, which a page leaves to a message of their own."""
    enqueue_many(session, send_email, ((email_id,) for email_id in email_ids))
