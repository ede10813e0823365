"""Actors of the reminders domain: firing (queue ``reminders``) and daily summaries (``email``).

Why the summaries run on the ``email`` queue: at 08:00 a burst of per-user summaries would
otherwise sit in front of due reminders; a summary is email work and may wait a little.
The two periodic actors only fan out (one message per reminder or user, sent after the
commit that stamped them), so one failing reminder or user is retried alone. A failing fan-out is
retried up to 3 times (it is idempotent: stamped rows are not handed out twice).
"""

from __future__ import annotations

from datetime import date

from bgworkers import queues
from bgworkers.db import session_scope, utcnow
from bgworkers.email.api import send_queued_email
from bgworkers.reminders import firing
from bgworkers.reminders.summary import dispatch_daily_summaries, send_daily_summary
from bgworkers.tasks import task


@task(queue=queues.REMINDERS, max_retries=5, min_backoff_ms=5_000, time_limit_ms=60_000)
def fire_reminder(reminder_id: int) -> None:
    """Fire one due reminder; a duplicate or late message finds nothing to do."""
    with session_scope() as session:
        firing.fire_reminder(
            reminder_id, session=session, now=utcnow(), dispatch_email=send_queued_email
        )


def _send_fire_messages(reminder_ids: list[int]) -> None:
    for reminder_id in reminder_ids:
        fire_reminder.send(reminder_id)


@task(queue=queues.REMINDERS, periodic=True, max_retries=3, time_limit_ms=55_000)
def check_due_reminders() -> None:
    """Every minute: send a ``fire_reminder`` message for each due reminder."""
    with session_scope() as session:
        firing.dispatch_due_reminders(session=session, now=utcnow(), dispatch=_send_fire_messages)


@task(queue=queues.EMAIL, max_retries=5, min_backoff_ms=5_000, time_limit_ms=60_000)
def send_user_daily_summary(user_id: int, local_date: date) -> None:
    """Write one user's summary for that local date (ISO string in the message)."""
    with session_scope() as session:
        send_daily_summary(
            user_id, local_date, session=session, now=utcnow(), dispatch_email=send_queued_email
        )


def _send_summary_messages(page: list[tuple[int, str]]) -> None:
    for user_id, local_date in page:
        send_user_daily_summary.send_with_options(args=(user_id, local_date))


@task(queue=queues.EMAIL, periodic=True, max_retries=3, time_limit_ms=600_000)
def send_daily_email_summary() -> None:
    """Every quarter hour: send a per-user message for each user due a summary."""
    with session_scope() as session:
        dispatch_daily_summaries(session=session, now=utcnow(), dispatch=_send_summary_messages)
