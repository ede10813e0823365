"""Periodic probe actors for the real-process scheduling tests.

Imported by the test process (whose in-process worker runs them) and by the ``periodiq``
subprocesses (``periodiq bgworkers tests.scheduling.probe_jobs``), which schedule those named
in ``BGW_TEST_PROBES`` (comma-separated; the others are declared but off; all are on when the
variable is unset, as in the test process, whose catch-up job must see them). Each run is
appended to :data:`RUNS` as ``(job, tick, attempt)``; the test reads it after the run.
"""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import dramatiq
from dramatiq.middleware import CurrentMessage

import bgworkers
from bgworkers import queues
from bgworkers.errors import TransientError
from bgworkers.scheduling.middleware import TICK_OPTION
from bgworkers.scheduling.periodic import CronPeriod
from bgworkers.scheduling.schedule import ScheduledJob
from bgworkers.settings import get_settings

PROBES = (
    ScheduledJob("probe_every_minute", "* * * * *", "counts its runs"),
    ScheduledJob("probe_daily", "0 11 * * *", "counts its runs", timedelta(hours=6)),
    ScheduledJob("probe_flaky", "* * * * *", "always fails, transiently"),
)
RUNS: list[tuple[str, str, int]] = []
_lock = threading.Lock()


def _period(job: ScheduledJob) -> CronPeriod:
    wanted = os.environ.get("BGW_TEST_PROBES", ",".join(p.actor_name for p in PROBES)).split(",")
    settings = get_settings()
    return CronPeriod(
        job,
        timezone=settings.timezone,
        override=None if job.actor_name in wanted else "off",
        clock_offset_s=settings.scheduler_clock_offset_s,
    )


def _record(job: str) -> None:
    message = CurrentMessage.get_current_message()
    assert message is not None
    with _lock:
        RUNS.append((job, message.options[TICK_OPTION], message.options.get("retries", 0)))


def _declare(job: ScheduledJob, **options: object) -> dramatiq.Actor[[], None]:
    def run() -> None:
        _record(job.actor_name)
        if job.actor_name == "probe_flaky":
            raise TransientError("probe failure")

    run.__name__ = job.actor_name
    return dramatiq.actor(
        broker=bgworkers.broker,
        actor_name=job.actor_name,
        queue_name=queues.MAINTENANCE,
        periodic=_period(job),
        time_limit=30_000,
        **options,
    )(run)


probe_every_minute = _declare(PROBES[0], max_retries=0)
probe_daily = _declare(PROBES[1], max_retries=0)
probe_flaky = _declare(PROBES[2], max_retries=2, min_backoff=100, max_backoff=200)
