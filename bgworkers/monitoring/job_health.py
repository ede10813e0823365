"""Per periodic job: when it last succeeded (from the database) and how often it should.

Why from the database, not a process gauge: a weekly job's "last success" must survive worker
restarts, or a backup that silently stopped would look fine after every deploy. The expected
interval is derived from the job's effective cron line (overrides and time zone included), so
one alert rule covers every job: "no success for 1.5 x its longest gap between ticks".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlmodel import Session

from bgworkers.db.engine import get_engine
from bgworkers.maintenance.heartbeat import SOURCE as HEARTBEAT_SOURCE
from bgworkers.maintenance.models import SchedulerHeartbeat
from bgworkers.metrics.reading import BackgroundReading
from bgworkers.scheduling.schedule import SCHEDULE
from bgworkers.settings import Settings


def expected_intervals(settings: Settings, *, now: datetime | None = None) -> dict[str, float]:
    """Longest gap in seconds between consecutive ticks over the next 8 weeks, per enabled job."""
    from bgworkers.scheduling.periodic import CronPeriod

    start = now or datetime.now(UTC)
    end = start + timedelta(weeks=8)
    gaps = {
        job.actor_name: CronPeriod.from_settings(job, settings).longest_gap_between(start, end)
        for job in SCHEDULE
    }
    return {job: gap.total_seconds() for job, gap in gaps.items() if gap is not None}


def last_successes(session: Session) -> dict[str, datetime]:
    from bgworkers.scheduling.models import ScheduledRun

    rows = session.exec(
        select(ScheduledRun.job, func.max(ScheduledRun.finished_at))  # type: ignore[call-overload]
        .where(ScheduledRun.status == "succeeded")
        .group_by(ScheduledRun.job)
    ).all()
    return {job: finished for job, finished in rows if finished is not None}


@dataclass(frozen=True)
class JobHealth:
    last_successes: dict[str, datetime]
    scheduler_tick: datetime | None
    paused: frozenset[str] = frozenset()


class JobHealthCollector(BackgroundReading[JobHealth], Collector):
    """Per-job health and the scheduler's last tick, read from the database in the background.

    A job with no success yet reports the time this collector started: the overdue alert then
    fires for a job that never succeeds, not only for one that stopped succeeding.
    """

    def __init__(self, settings: Settings, *, interval_s: float = 15.0, start: bool = True) -> None:
        self._settings = settings
        self._intervals = expected_intervals(settings)
        self._started_at = time.time()
        initial = JobHealth({}, None)
        super().__init__(
            "job-health", self._read, initial=initial, interval_s=interval_s, start=start
        )

    def _read(self) -> JobHealth:
        from bgworkers.scheduling.pauses import paused_jobs

        with Session(get_engine(self._settings)) as session:
            heartbeat = session.get(SchedulerHeartbeat, HEARTBEAT_SOURCE)
            return JobHealth(
                last_successes(session),
                heartbeat.scheduled_at if heartbeat else None,
                frozenset(paused_jobs(session)),
            )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        health, last_read, _ = self.snapshot()
        last = GaugeMetricFamily(
            "bgworkers_job_last_success_timestamp_seconds",
            "Unix time the periodic job last finished successfully (from the database); "
            "for a job without a success yet, when this metrics process started.",
            labels=["periodic_job"],
        )
        interval = GaugeMetricFamily(
            "bgworkers_job_expected_interval_seconds",
            "Longest gap between two ticks of the job's schedule, in seconds.",
            labels=["periodic_job"],
        )
        paused = GaugeMetricFamily(
            "bgworkers_job_paused",
            "1 while the periodic job is paused by an operator (bgworkers jobs pause), else 0.",
            labels=["periodic_job"],
        )
        tick = GaugeMetricFamily(
            "bgworkers_scheduler_last_tick_timestamp_seconds",
            "Unix time of the newest scheduler tick a worker recorded (heartbeat, from the "
            "database): the scheduler's liveness, surviving worker restarts.",
        )
        if last_read:  # nothing until the database has answered once
            for job, seconds in sorted(self._intervals.items()):
                succeeded = health.last_successes.get(job)
                stamp = succeeded.timestamp() if succeeded else self._started_at
                last.add_metric([job], stamp)
                interval.add_metric([job], seconds)
            for entry in SCHEDULE:
                paused.add_metric([entry.actor_name], int(entry.actor_name in health.paused))
        if health.scheduler_tick is not None:
            tick.add_metric([], health.scheduler_tick.timestamp())
        yield from (last, interval, paused, tick)
