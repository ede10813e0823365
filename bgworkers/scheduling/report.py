"""``bgworkers schedule``: each job with its cron, zone, next run, last run and outcome.

Read from the schedule table, the settings (zone, overrides) and the ``scheduled_runs`` /
``scheduled_job_state`` / ``scheduled_job_pauses`` tables, so it shows what the schedulers and
workers actually did.
"""

from __future__ import annotations

from datetime import datetime
from typing import TextIO
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from bgworkers.db.engine import get_engine, session_scope, utcnow
from bgworkers.scheduling.models import ScheduledJobState, ScheduledRun
from bgworkers.scheduling.pauses import paused_jobs
from bgworkers.scheduling.periodic import CronPeriod
from bgworkers.scheduling.schedule import SCHEDULE
from bgworkers.settings import Settings

_HEADERS = (
    "job", "cron", "zone", "next run", "last run", "outcome", "duration_s", "missed", "paused",
)  # fmt: skip


def schedule_rows(session: Session, settings: Settings, *, now: datetime) -> list[tuple[str, ...]]:
    """One row of text cells per schedule-table entry, times in the configured zone."""
    zone = ZoneInfo(settings.timezone)
    rows: list[tuple[str, ...]] = []
    paused = paused_jobs(session)
    for entry in SCHEDULE:
        period = CronPeriod.from_settings(entry, settings)
        cron = period.cron + (" (override)" if period.overridden else "")
        last = session.exec(
            select(ScheduledRun)
            .where(ScheduledRun.job == entry.actor_name)
            .order_by(col(ScheduledRun.tick).desc())
            .limit(1)
        ).first()
        state = session.get(ScheduledJobState, entry.actor_name)
        pause = paused.get(entry.actor_name)
        rows.append(
            (
                entry.actor_name,
                cron if period.enabled else f"off ({period.job.cron})",
                settings.timezone,
                _when(period.next_tick(now), zone) if period.enabled else "disabled",
                _when(last.tick, zone) if last else "never",
                # Not a fault before the job's first tick.
                last.status if last else "waiting for its first run",
                f"{last.duration_s:.3f}" if last and last.duration_s is not None else "-",
                str(state.missed_ticks if state else 0),
                f"since {pause.paused_at:%Y-%m-%d %H:%M} UTC: {pause.reason}" if pause else "-",
            )
        )
    return rows


def print_schedule(settings: Settings, out: TextIO, *, now: datetime | None = None) -> None:
    """Print the schedule as an aligned table on ``out``."""
    with session_scope(get_engine(settings)) as session:
        rows = schedule_rows(session, settings, now=now or utcnow())
    widths = [max(len(row[i]) for row in (_HEADERS, *rows)) for i in range(len(_HEADERS))]
    for row in (_HEADERS, *rows):
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.write("  ".join(cells).rstrip() + "\n")


def _when(instant: datetime | None, zone: ZoneInfo) -> str:
    if instant is None:
        return "-"
    return instant.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
