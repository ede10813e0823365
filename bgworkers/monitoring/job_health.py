"""Per periodic job: when it last succeeded (from the database) and how often it should.

Why from the database, not a process gauge: a weekly job's "last success" must survive worker
restarts, or a backup that silently stopped would look fine after every deploy. The expected
interval is derived from the job's effective cron line (overrides and time zone included), so
one alert rule covers every job: "no success for 1.5 x its longest gap between ticks".
Readings are cached for ``interval_s`` seconds; a scrape never waits on the database.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlmodel import Session

from bgworkers.db import get_engine
from bgworkers.logs import get_logger
from bgworkers.schedule import SCHEDULE
from bgworkers.settings import Settings

log = get_logger(__name__)


def expected_intervals(settings: Settings, *, now: datetime | None = None) -> dict[str, float]:
    """Longest gap in seconds between consecutive ticks over the next 8 weeks, per enabled job."""
    from bgworkers.scheduling.periodic import CronPeriod

    start = now or datetime.now(UTC)
    end = start + timedelta(weeks=8)
    gaps: dict[str, float] = {}
    for job in SCHEDULE:
        ticks = CronPeriod.from_settings(job, settings).ticks_between(start, end)
        if len(ticks) >= 2:
            gaps[job.actor_name] = max(
                (b - a).total_seconds() for a, b in itertools.pairwise(ticks)
            )
    return gaps


def last_successes(session: Session) -> dict[str, datetime]:
    from bgworkers.scheduling.models import ScheduledRun

    rows = session.exec(
        select(ScheduledRun.job, func.max(ScheduledRun.finished_at))  # type: ignore[call-overload]
        .where(ScheduledRun.status == "succeeded")
        .group_by(ScheduledRun.job)
    ).all()
    return {job: finished for job, finished in rows if finished is not None}


class JobHealthCollector(Collector):
    def __init__(
        self,
        settings: Settings,
        *,
        read: Callable[[], dict[str, datetime]] | None = None,
        interval_s: float = 15.0,
    ) -> None:
        self._intervals = expected_intervals(settings)
        self._read = read or self._read_database
        self._settings = settings
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._at = 0.0
        self._successes: dict[str, datetime] = {}

    def _read_database(self) -> dict[str, datetime]:
        with Session(get_engine(self._settings)) as session:
            return last_successes(session)

    def _current(self) -> dict[str, datetime]:
        with self._lock:
            if time.monotonic() - self._at >= self._interval_s:
                self._at = time.monotonic()
                try:
                    self._successes = self._read()
                except Exception as exc:  # noqa: BLE001 - keep serving the last reading
                    log.warning("job_health_read_failed", error=f"{type(exc).__name__}: {exc}")
            return dict(self._successes)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        last = GaugeMetricFamily(
            "bgworkers_job_last_success_timestamp_seconds",
            "Unix time the periodic job last finished successfully (from the database).",
            labels=["periodic_job"],
        )
        for job, finished in sorted(self._current().items()):
            last.add_metric([job], finished.timestamp())
        interval = GaugeMetricFamily(
            "bgworkers_job_expected_interval_seconds",
            "Longest gap between two ticks of the job's schedule, in seconds.",
            labels=["periodic_job"],
        )
        for job, seconds in sorted(self._intervals.items()):
            interval.add_metric([job], seconds)
        yield last
        yield interval
