"""The schedule table: every periodic job of bgworkers and when it runs, in one place.

An actor becomes periodic with ``@task(..., periodic=True)``; its cron line lives here and
nowhere else. ``tests/test_schedule.py`` checks the table against the declared actors, both
ways. Cron expressions have five fields (minute hour day-of-month month day-of-week) and are
read in the operator's zone ``BGW_TIMEZONE`` (see :mod:`bgworkers.scheduling.cron` for the
exact semantics, daylight-saving changes included); ``BGW_SCHEDULE_OVERRIDES`` changes or
disables an entry without a code change.

``catch_up_window``: after the scheduler was down, a missed tick younger than this is run once
on recovery; older ones are logged and counted as missed. Zero for jobs whose next run does the
missed run's work anyway (a check for due items, a queue drain, an incremental sync).
``fan_out`` says how a per-user job spreads its work, for the reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bgworkers.errors import ConfigurationError
from bgworkers.scheduling.cron import CronError, CronExpression
from bgworkers.scheduling.periodic import OFF, CronPeriod

NO_CATCH_UP = timedelta(0)


@dataclass(frozen=True)
class ScheduledJob:
    actor_name: str
    cron: str
    purpose: str
    catch_up_window: timedelta = NO_CATCH_UP
    fan_out: str = ""


_PER_USER = "enqueues one message per user, in batches"

SCHEDULE: tuple[ScheduledJob, ...] = (
    ScheduledJob("heartbeat", "* * * * *", "record that the scheduler is alive"),
    ScheduledJob("check_due_reminders", "* * * * *", "enqueue reminders that are due"),
    ScheduledJob("process_email_queue", "*/5 * * * *", "send outbox emails still queued"),
    ScheduledJob(
        "send_daily_email_summary",
        "*/15 * * * *",
        "send each user's summary once it is 08:00 or later in the user's own zone",
        fan_out=_PER_USER,
    ),
    ScheduledJob(
        "cleanup_temp_files",
        "0 2 * * *",
        "delete old temporary files",
        catch_up_window=timedelta(hours=6),
    ),
    ScheduledJob(
        "backup_user_data",
        "0 1 * * 7",
        "archive every user's data (Sundays)",
        catch_up_window=timedelta(hours=24),
        fan_out=_PER_USER,
    ),
    ScheduledJob(
        "sync_calendar_events", "0 * * * *", "pull calendar changes per user", fan_out=_PER_USER
    ),
    ScheduledJob(
        "sync_notion_pages", "0 */2 * * *", "pull Notion pages per user", fan_out=_PER_USER
    ),
    ScheduledJob(
        "optimize_database",
        "0 3 * * 7",
        "vacuum and analyse (Sundays)",
        catch_up_window=timedelta(hours=24),
    ),
    ScheduledJob(
        "cleanup_old_sessions",
        "0 4 * * *",
        "delete expired user sessions",
        catch_up_window=timedelta(hours=6),
    ),
    ScheduledJob(
        "prune_dead_letters",
        "0 * * * *",
        "drop dead-letter index rows whose message left the XQ (7-day TTL)",
    ),
    ScheduledJob(
        "prune_rate_limit_rows",
        "30 4 * * *",
        "delete shared rate-limit rows of credentials unused for BGW_RATE_LIMIT_ROW_IDLE_DAYS",
    ),
    ScheduledJob(
        "catch_up_missed_ticks",
        "* * * * *",
        "re-send ticks missed while the scheduler was down, within each job's window",
    ),
)


def periodic_option(actor_name: str) -> Any:
    """The value of an actor's ``periodic`` option, read by periodiq's scheduler."""
    from bgworkers.settings import get_settings

    settings = get_settings()
    check_overrides(settings.schedule_overrides)  # ConfigurationError naming the variable
    entry = next((entry for entry in SCHEDULE if entry.actor_name == actor_name), None)
    if entry is None:
        raise KeyError(
            f"{actor_name!r} is not in the schedule table (bgworkers/scheduling/schedule.py)"
        )
    return CronPeriod.from_settings(entry, settings)


def check_overrides(overrides: dict[str, str]) -> None:
    """Raise :class:`ConfigurationError` naming ``BGW_SCHEDULE_OVERRIDES`` and each problem
    unless every key is a scheduled job and every value a cron line or ``off``.

    Why: a typo in a job name or a cron field would otherwise leave a job running on its old
    schedule (or not at all) without a word; checked when the first periodic actor is declared,
    so every process refuses a bad value. Here, not in :mod:`bgworkers.settings`, so that the
    settings depend on nothing of the schedule (which itself reads the settings).
    """
    known = {entry.actor_name for entry in SCHEDULE}
    problems: list[str] = []
    for name, value in overrides.items():
        if name not in known:
            problems.append(f"{name!r} is not in the schedule table ({', '.join(sorted(known))})")
            continue
        if value.strip().lower() == OFF:
            continue
        try:
            CronExpression.parse(value)
        except CronError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise ConfigurationError(
            f"invalid configuration: BGW_SCHEDULE_OVERRIDES: {'; '.join(problems)}"
        )
