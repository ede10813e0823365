"""Actors of the reminders domain: firing (queue ``reminders``) and daily summaries (``email``).

Why the summaries run on the ``email`` queue: at 08:00 a burst of per-user summaries would
otherwise sit in front of due reminders; a summary is email work and may wait a little.
The two periodic actors only fan out (one message per reminder or user, written to the
message outbox in the transaction that stamps them), so one failing reminder or user is
retried alone. A failing fan-out is
retried up to 3 times (it is idempotent: stamped rows are not handed out twice).
"""

from __future__ import annotations

from datetime import date

from bgworkers import queues
from bgworkers.db.engine import session_scope, utcnow
from bgworkers.outbox import enqueue_many
from bgworkers.outbox.keys import per_run_key
from bgworkers.reminders import firing
from bgworkers.reminders.summary import dispatch_daily_summaries, send_daily_summary
from bgworkers.scheduling.middleware import scheduled_now
from bgworkers.tasks import task


@task(queue=queues.REMINDERS, max_retries=5, min_backoff_ms=5_000, time_limit_ms=60_000)
def fire_reminder(reminder_id: int) -> None:
    """Fire one due reminder; a duplicate or late message finds nothing to do."""
    with session_scope() as session:
        firing.fire_reminder(reminder_id, session=session, now=utcnow())


@task(queue=queues.REMINDERS, periodic=True, max_retries=3, time_limit_ms=55_000)
def check_due_reminders() -> None:
    """Every minute: record a ``fire_reminder`` message for each due reminder (outbox)."""
    with session_scope() as session:

        def dispatch(reminder_ids: list[int]) -> None:
            enqueue_many(session, fire_reminder, ((i,) for i in reminder_ids))

        firing.dispatch_due_reminders(session=session, now=utcnow(), dispatch=dispatch)


@task(queue=queues.EMAIL, max_retries=5, min_backoff_ms=5_000, time_limit_ms=60_000)
def send_user_daily_summary(user_id: int, local_date: date) -> None:
    """Write one user's summary for that local date (ISO string in the message)."""
    with session_scope() as session:
        send_daily_summary(user_id, local_date, session=session, now=utcnow())


@task(queue=queues.EMAIL, periodic=True, max_retries=3, time_limit_ms=600_000)
def send_daily_email_summary() -> None:
    """Every quarter hour: record a per-user message for each user due a summary (outbox).

    "Due" is judged at the message's tick (08:00 is 08:00 even if this worker's clock is a
    second behind the scheduler's), as docs/scheduling.md promises.
    """
    now = scheduled_now(fallback=utcnow())
    with session_scope() as session:

        def dispatch(page: list[tuple[int, str]]) -> None:
            enqueue_many(session, send_user_daily_summary, page, dedupe_key=per_run_key)

        dispatch_daily_summaries(session=session, now=now, dispatch=dispatch)
