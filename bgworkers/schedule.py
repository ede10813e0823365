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


SCHEDULE: tuple[ScheduledJob, ...] = (
    ScheduledJob("heartbeat", "* * * * *", "record that the scheduler is alive"),
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
