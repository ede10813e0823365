"""Actors of the reminders domain: firing (queue ``reminders``) and daily summaries (``email``).

Why the summaries run on the ``email`` queue: at 08:00 a burst of summaries would otherwise
sit in front of due reminders; a summary is email work and may wait a little.
The two periodic actors only fan out: one message per page of reminders or users, written to
the message outbox in the transaction that stamps them. A page message writes its page in one
transaction and delivers the emails itself right after (``deliver_now``), so emails leave
while later pages are still being written; one reminder or user that cannot be handled is
handed to its own per-item message (``fire_reminder``, ``send_user_daily_summary``, kept for
that) and retried alone; so is every item of a page whose transaction fails as a whole for a
reason that is not an outage, or for any reason but a time limit on its retry
(:mod:`bgworkers.reminders.splitting`). A failing fan-out is
retried up to 3 times (it is idempotent: stamped rows are not handed out twice).
"""

from __future__ import annotations

from datetime import date

from bgworkers import queues
from bgworkers.db.engine import session_scope, utcnow
from bgworkers.email.api import deliver_now
from bgworkers.outbox import enqueue, enqueue_many
from bgworkers.outbox.keys import per_run_key
from bgworkers.reminders import firing
from bgworkers.reminders.giving_up import close_if_given_up
from bgworkers.reminders.splitting import write_page_or_split
from bgworkers.reminders.summary import dispatch_daily_summaries, send_daily_summary
from bgworkers.reminders.summary_pages import PAGE_SIZE, write_summary_page
from bgworkers.scheduling.middleware import scheduled_now
from bgworkers.tasks import is_final_attempt, is_retry, task


@task(
    queue=queues.REMINDERS,
    max_retries=5,
    min_backoff_ms=5_000,
    time_limit_ms=60_000,
    priority=queues.URGENT_PRIORITY,
)
def fire_reminder(reminder_id: int) -> None:
    """Fire one due reminder; a duplicate or late message finds nothing to do.

    A failure this message gives up on (last attempt, permanent error; never an outage)
    closes the reminder as failed, so the minute check stops handing it out.
    """
    try:
        with session_scope() as session:
            firing.fire_reminder(reminder_id, session=session, now=utcnow())
    except Exception as exc:  # re-raised: the retry policy decides as before
        close_if_given_up(
            reminder_id,
            exc,
            final_attempt=is_final_attempt(fire_reminder),
            open_session=session_scope,
            now=utcnow(),
        )
        raise


@task(
    queue=queues.REMINDERS,
    max_retries=5,
    min_backoff_ms=5_000,
    time_limit_ms=60_000,
    priority=queues.URGENT_PRIORITY,
)
def fire_reminder_page(reminder_ids: list[int]) -> None:
    """Fire a page of due reminders in one transaction, then deliver their emails.

    The emails leave from this message (the reminders lane); one that fails transiently is
    retried by its own message on the urgent lane, never behind a bulk backlog.
    """
    with session_scope() as session:

        def fallback(reminder_id: int) -> None:
            enqueue(session, fire_reminder, reminder_id)

        email_ids = write_page_or_split(
            session,
            lambda: firing.fire_reminder_page(
                reminder_ids, session=session, now=utcnow(), fallback=fallback
            ),
            per_item=fire_reminder,
            items=[(reminder_id,) for reminder_id in reminder_ids],
            retry=is_retry(),
        )
        deliver_now(session, email_ids, urgent=True)


@task(
    queue=queues.REMINDERS,
    periodic=True,
    max_retries=3,
    time_limit_ms=55_000,
    priority=queues.URGENT_PRIORITY,
)
def check_due_reminders() -> None:
    """Every minute: record a ``fire_reminder_page`` message per page of due reminders.

    Each page of the walk is committed (and so published) as soon as it is stamped, so the
    first reminders go out while later ones are still being listed.
    """
    with session_scope() as session:

        def dispatch(reminder_ids: list[int]) -> None:
            pages = [
                (reminder_ids[i : i + firing.PAGE_SIZE],)
                for i in range(0, len(reminder_ids), firing.PAGE_SIZE)
            ]
            enqueue_many(session, fire_reminder_page, pages)

        firing.dispatch_due_reminders(session=session, now=utcnow(), dispatch=dispatch)


@task(queue=queues.EMAIL, max_retries=5, min_backoff_ms=5_000, time_limit_ms=60_000)
def send_user_daily_summary(user_id: int, local_date: date) -> None:
    """Write one user's summary for that local date (ISO string in the message)."""
    with session_scope() as session:
        send_daily_summary(user_id, local_date, session=session, now=utcnow())


@task(queue=queues.EMAIL, max_retries=5, min_backoff_ms=5_000, time_limit_ms=120_000)
def send_daily_summary_page(user_ids: list[int], local_date: date) -> None:
    """Write a page of users' summaries in one transaction, then deliver their emails."""
    with session_scope() as session:

        def fallback(user_id: int) -> None:
            enqueue(session, send_user_daily_summary, user_id, local_date.isoformat())

        email_ids = write_page_or_split(
            session,
            lambda: write_summary_page(
                user_ids, local_date, session=session, now=utcnow(), fallback=fallback
            ),
            per_item=send_user_daily_summary,
            items=[(user_id, local_date.isoformat()) for user_id in user_ids],
            retry=is_retry(),
        )
        deliver_now(session, email_ids)


@task(queue=queues.EMAIL, periodic=True, max_retries=3, time_limit_ms=600_000)
def send_daily_email_summary() -> None:
    """Every quarter hour: record a page message for each page of users due a summary.

    Each page of the walk is committed as soon as it is recorded, so the relay publishes the
    first pages (and their emails leave) while later users are still being listed. "Due" is
    judged at the message's tick (08:00 is 08:00 even if this worker's clock is a second
    behind the scheduler's), as docs/scheduling.md promises.
    """
    now = scheduled_now(fallback=utcnow())
    with session_scope() as session:

        def dispatch(page: list[tuple[int, str]]) -> None:
            pages = [
                ([user_id for user_id, _ in page[i : i + PAGE_SIZE]], page[i][1])
                for i in range(0, len(page), PAGE_SIZE)
            ]
            enqueue_many(session, send_daily_summary_page, pages, dedupe_key=per_run_key)
            session.commit()

        dispatch_daily_summaries(session=session, now=now, dispatch=dispatch)
