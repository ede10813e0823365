"""The value of a periodic actor's ``periodic`` option: what periodiq's scheduler asks.

periodiq's ``Scheduler`` calls, for every periodic actor at every wake-up, ``validate(now)``
(send the actor now?) and ``next_valid_date(now)`` (when to wake up next, a pendulum datetime),
and prints ``str(option)``. ``now`` is ``pendulum.now()`` in the process's local zone, rounded
to the second; :class:`CronPeriod` turns it into a UTC instant first, so the machine's zone
never matters, and answers from :class:`~bgworkers.scheduling.cron.ZonedCron` in the
configured zone. A *tick* is the minute-aligned UTC instant a run belongs to.

``clock_offset_s`` (``BGW_SCHEDULER_CLOCK_OFFSET_S``) is for tests only: the scheduler
behaves as if the time were ``now + offset`` (whole seconds); docs/scheduling.md says how the
tests use it to avoid waiting real minutes.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bgworkers.scheduling.cron import CronExpression, ZonedCron, floor_minute

if TYPE_CHECKING:
    from bgworkers.scheduling.schedule import ScheduledJob
    from bgworkers.settings import Settings

#: The override value that disables a job.
OFF = "off"
#: Where a disabled job's "next run" is put, so periodiq sleeps on the other actors.
_FAR_AWAY = timedelta(days=366)


class CronPeriod:
    """A schedule-table entry as periodiq's ``periodic`` option, in the configured zone."""

    def __init__(
        self,
        job: ScheduledJob,
        *,
        timezone: str = "UTC",
        override: str | None = None,
        clock_offset_s: float = 0.0,
    ) -> None:
        self.job = job
        wanted = job.cron if override is None else override.strip()
        self.enabled = wanted.lower() != OFF
        self.cron = wanted if self.enabled else job.cron
        self.overridden = override is not None
        self.timezone = timezone
        self.clock_offset = timedelta(seconds=round(clock_offset_s))

    @functools.cached_property
    def schedule(self) -> ZonedCron:
        """The line's ticks, parsed on first use: every process declares the periodic actors,
        few compute a tick (overrides are checked at start by ``check_overrides``)."""
        return ZonedCron(CronExpression.parse(self.cron), ZoneInfo(self.timezone))

    @classmethod
    def from_settings(cls, job: ScheduledJob, settings: Settings) -> CronPeriod:
        return cls(
            job,
            timezone=settings.timezone,
            override=settings.schedule_overrides.get(job.actor_name),
            clock_offset_s=settings.scheduler_clock_offset_s,
        )

    @property
    def name(self) -> str:
        return self.job.actor_name

    def tick_at(self, now: datetime) -> datetime:
        """The tick (UTC minute) that ``now``, any aware datetime, falls in."""
        return floor_minute(datetime.fromtimestamp(now.timestamp(), UTC) + self.clock_offset)

    def validate(self, now: datetime) -> bool:
        """periodiq: send this job at ``now``?"""
        return self.enabled and self.schedule.is_tick(self.tick_at(now))

    def next_valid_date(self, now: datetime) -> Any:
        """periodiq: the (real) time of the first tick after ``now``'s minute, as pendulum."""
        import pendulum

        following = self.next_tick(self.tick_at(now))
        real = following - self.clock_offset if following is not None else now + _FAR_AWAY
        real = real.astimezone(UTC)
        return pendulum.DateTime(*real.timetuple()[:6], real.microsecond, tzinfo=pendulum.UTC)

    def next_tick(self, after: datetime) -> datetime | None:
        """The first tick strictly after ``after``; None when disabled."""
        return self.schedule.next_after(after) if self.enabled else None

    def ticks_between(self, start: datetime, end: datetime) -> list[datetime]:
        """Ticks strictly between ``start`` and ``end``; none when disabled."""
        return self.schedule.ticks_between(start, end) if self.enabled else []

    def longest_gap_between(self, start: datetime, end: datetime) -> timedelta | None:
        """The longest time between consecutive ticks in ``(start, end)``; None when
        disabled or with fewer than two ticks."""
        return self.schedule.longest_gap_between(start, end) if self.enabled else None

    def __str__(self) -> str:
        if not self.enabled:
            return f"off ({self.job.cron})"
        return f"{self.cron} {self.timezone}"

    def __repr__(self) -> str:
        return f"<CronPeriod {self.name}: {self}>"
