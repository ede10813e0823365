"""The scheduler heartbeat: proof, in a row and a metric, that periodic work is flowing.

The ``heartbeat`` job is scheduled every minute. Each run stamps the time the scheduler
enqueued it (``scheduled_at``) and the time a worker ran it; the monitoring layer alerts when
the stamp grows old, which covers a dead scheduler, a dead broker and idle workers alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import case, or_, update
from sqlalchemy.exc import IntegrityError
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


def record_heartbeat(*, session: Session, now: datetime, scheduled_at: datetime | None) -> None:
    """Stamp the heartbeat row; idempotent: a duplicate delivery only moves the stamps.

    One atomic UPDATE (not read-then-write): worker processes run beats concurrently, and a
    read-modify-write would lose counts on SQLite, which has no row locks.
    """
    table = SchedulerHeartbeat.__table__  # type: ignore[attr-defined]
    values: dict[str, Any] = {"processed_at": now, "beats": table.c.beats + 1}
    if scheduled_at is not None:
        column = table.c.scheduled_at
        values["scheduled_at"] = case(
            (or_(column.is_(None), column < scheduled_at), scheduled_at), else_=column
        )
    updated = session.execute(update(table).where(table.c.source == SOURCE).values(**values))
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        try:
            with session.begin_nested():
                session.add(
                    SchedulerHeartbeat(
                        source=SOURCE, processed_at=now, scheduled_at=scheduled_at, beats=1
                    )
                )
        except IntegrityError:  # another worker inserted the first row meanwhile
            session.execute(update(table).where(table.c.source == SOURCE).values(**values))
    metrics = HEARTBEAT_METRICS.get()
    metrics.last_beat.set(now.timestamp())
    metrics.beats.inc()
