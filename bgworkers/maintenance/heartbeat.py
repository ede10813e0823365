"""The scheduler heartbeat: proof, in a row and a metric, that periodic work is flowing.

The ``heartbeat`` job is scheduled every minute. Each run stamps the time the scheduler
enqueued it (``scheduled_at``) and the time a worker ran it; the monitoring layer alerts when
the stamp grows old, which covers a dead scheduler, a dead broker and idle workers alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlmodel import Session

from bgworkers.maintenance.models import SchedulerHeartbeat
from bgworkers.metrics import LazyMetrics

SOURCE = "scheduler"


@dataclass(frozen=True)
class HeartbeatMetrics:
    last_beat: Gauge
    beats: Counter

    @classmethod
    def build(cls, registry: CollectorRegistry) -> HeartbeatMetrics:
        return cls(
            last_beat=Gauge(
                "bgworkers_scheduler_heartbeat_timestamp_seconds",
                "Unix time of the last scheduler heartbeat a worker processed.",
                registry=registry,
                multiprocess_mode="max",
            ),
            beats=Counter(
                "bgworkers_scheduler_heartbeats_total",
                "Scheduler heartbeats processed.",
                registry=registry,
            ),
        )


HEARTBEAT_METRICS: LazyMetrics[HeartbeatMetrics] = LazyMetrics(HeartbeatMetrics.build)


def record_heartbeat(
    *, session: Session, now: datetime, scheduled_at: datetime | None
) -> SchedulerHeartbeat:
    """Stamp the heartbeat row; idempotent: a duplicate delivery only moves the stamps."""
    row = session.get(SchedulerHeartbeat, SOURCE, with_for_update=True)
    if row is None:
        row = SchedulerHeartbeat(source=SOURCE, processed_at=now)
    row.scheduled_at = max(filter(None, (row.scheduled_at, scheduled_at)), default=None)
    row.processed_at = now
    row.beats += 1
    session.add(row)
    metrics = HEARTBEAT_METRICS.get()
    metrics.last_beat.set(now.timestamp())
    metrics.beats.inc()
    return row
