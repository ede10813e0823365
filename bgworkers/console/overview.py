"""The console's overview: queues and lanes, provider rate limits, recent failures, scheduler
heartbeat and job health.

Each part is read on its own, so a RabbitMQ that does not answer still leaves the database's
parts on the page (and says what failed, redacted).

The queue depths are read only from a broker that answers (:func:`checked_depth_reader`):
the management API may answer when the broker of ``BGW_BROKER_URL`` does not, and its zeros
would then read as all well (docs/console.md, ``bgworkers queues``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pika.exceptions

from bgworkers.brokers.broker_nodes import probe_broker_problem
from bgworkers.console.dead_letters import DeadLetterFilter
from bgworkers.console.jobs import JobView, job_views
from bgworkers.console.models import DeadLetter
from bgworkers.console.operations import Console
from bgworkers.db.engine import utcnow
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.redaction import redact_text
from bgworkers.monitoring.job_health import expected_intervals, last_successes
from bgworkers.monitoring.queue_depth import QueueDepth, reader_from_settings
from bgworkers.monitoring.report import STALE_HEARTBEAT_S, heartbeat_age_s
from bgworkers.processes.diagnosis import quiet_pika
from bgworkers.scheduling.middleware import broker_periods
from bgworkers.settings import Settings
from bgworkers.sync.api import RateLimitWaits, rate_limit_waits


class QueuesNotRead(Exception):
    """The queue depths could not be read; the text says what failed and why, in one line."""


def checked_depth_reader(settings: Settings) -> Callable[[], list[QueueDepth]]:
    """A reader (made once per process) that raises :class:`QueuesNotRead` unless the broker
    of the settings answers and its depths were read."""
    url = settings.broker_url.get_secret_value()
    read = reader_from_settings(url, settings.rabbitmq_management_url)

    def read_checked() -> list[QueueDepth]:
        problem = probe_broker_problem(url, timeout_s=settings.readiness_timeout_s)
        if problem is not None:
            raise QueuesNotRead(problem.message)
        try:
            with quiet_pika():
                return read()
        except (pika.exceptions.AMQPError, OSError) as exc:  # gone since the probe
            reason = redact_text(failure_reason(exc)).splitlines()[0][:300]
            raise QueuesNotRead(f"RabbitMQ stopped answering ({reason})") from None

    return read_checked


#: A job is overdue when its last success is older than this many expected intervals plus
#: the grace below, in seconds (the overdue alert's rule, docs/monitoring.md).
OVERDUE_FACTOR = 1.5
OVERDUE_GRACE_S = 600


@dataclass(frozen=True)
class JobHealthRow:
    """``waiting``: the job has never run (no success, no attempt): it waits for its first
    tick, which is not a fault; ``overdue`` then stays False."""

    job: JobView
    last_success: datetime | None
    overdue: bool
    waiting: bool = False


@dataclass
class Overview:
    queues: list[QueueDepth] = field(default_factory=list)
    queues_error: str | None = None
    rate_limits: list[RateLimitWaits] = field(default_factory=list)
    recent: list[DeadLetter] = field(default_factory=list)
    heartbeat_age_s: float | None = None
    heartbeat_stale: bool = True
    jobs: list[JobHealthRow] = field(default_factory=list)
    database_error: str | None = None


def read_overview(
    console: Console, *, read_queues: Callable[[], list[QueueDepth]], now: datetime | None = None
) -> Overview:
    """``read_queues``: the queue-depth reader, made once per process
    (:func:`checked_depth_reader`). Queues that could not be read leave ``queues`` empty and
    say why in ``queues_error``."""
    now = now or utcnow()
    view = Overview()
    settings = console.settings
    try:
        view.queues = read_queues()
    except QueuesNotRead as exc:
        view.queues_error = str(exc)
    except Exception as exc:  # noqa: BLE001 - shown on the page; the other parts still load
        view.queues_error = redact_text(failure_reason(exc))[:300]
    try:
        view.recent = console.dead_letters(DeadLetterFilter(limit=10))
        view.heartbeat_age_s = heartbeat_age_s(settings, now=now)
        view.heartbeat_stale = (
            view.heartbeat_age_s is None or view.heartbeat_age_s > STALE_HEARTBEAT_S
        )
        intervals = expected_intervals(settings, now=now)
        with console.session() as session:
            views = job_views(session, broker_periods(console.broker), now=now, runs=1)
            successes = last_successes(session)
            view.rate_limits = rate_limit_waits(session, now=now.timestamp())
        for job in views:
            last = successes.get(job.name)
            waiting = last is None and job.last is None
            overdue = not waiting and _overdue(last, intervals.get(job.name), job, now)
            view.jobs.append(JobHealthRow(job, last, overdue, waiting))
    except Exception as exc:  # noqa: BLE001 - shown on the page instead of an error page
        view.database_error = redact_text(failure_reason(exc))[:300]
    return view


def _overdue(last: datetime | None, interval: float | None, job: JobView, now: datetime) -> bool:
    """A job that ran but has no success, or none within its interval (seconds), unpaused."""
    if interval is None or job.pause is not None:
        return False
    return (
        last is None or (now - last).total_seconds() > OVERDUE_FACTOR * interval + OVERDUE_GRACE_S
    )
