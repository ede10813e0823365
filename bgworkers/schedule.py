"""The schedule table: every periodic job of bgworkers and when it runs, in one place.

An actor becomes periodic with ``@task(..., periodic=True)``; its cron line lives here and
nowhere else. ``tests/test_schedule.py`` checks the table against the declared actors, both
ways. Cron expressions have five fields (minute hour day-of-month month day-of-week).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from croniter import croniter


@dataclass(frozen=True)
class ScheduledJob:
    actor_name: str
    cron: str
    purpose: str


# Day-of-week Sunday is written 7, never 0 (periodiq 0.14 never fires a 0).
SCHEDULE: tuple[ScheduledJob, ...] = (
    ScheduledJob("heartbeat", "* * * * *", "record that the scheduler is alive"),
    ScheduledJob("check_due_reminders", "* * * * *", "enqueue reminders that are due"),
    ScheduledJob("process_email_queue", "*/5 * * * *", "send outbox emails still queued"),
    ScheduledJob(
        "send_daily_email_summary",
        "*/15 * * * *",
        "send each user's summary once it is 08:00 or later in the user's own zone",
    ),
    ScheduledJob("cleanup_temp_files", "0 2 * * *", "delete old temporary files"),
    ScheduledJob("backup_user_data", "0 1 * * 7", "archive every user's data (Sundays)"),
    ScheduledJob("sync_calendar_events", "0 * * * *", "pull calendar changes per user"),
    ScheduledJob("sync_notion_pages", "0 */2 * * *", "pull Notion pages per user"),
    ScheduledJob("optimize_database", "0 3 * * 7", "vacuum and analyse (Sundays)"),
    ScheduledJob("cleanup_old_sessions", "0 4 * * *", "delete expired user sessions"),
)


def job(actor_name: str) -> ScheduledJob:
    for entry in SCHEDULE:
        if entry.actor_name == actor_name:
            return entry
    raise KeyError(f"{actor_name!r} is not in the schedule table (bgworkers/schedule.py)")


def periodic_option(actor_name: str) -> Any:
    """The value of an actor's ``periodic`` option, read by periodiq's scheduler."""
    from periodiq import cron

    expression = job(actor_name).cron
    if not croniter.is_valid(expression):
        raise ValueError(f"invalid cron expression {expression!r} for {actor_name}")
    return cron(expression)
