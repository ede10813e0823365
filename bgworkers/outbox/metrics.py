"""Metrics of the outbox: counters from the processes, the backlog read from the database.

Why the backlog comes from the database (a collector in the metrics process, like the job
health): it is a property of the table, not of any one process, and it must be visible
precisely when no relay runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlmodel import Session

from bgworkers.metrics import LazyMetrics
from bgworkers.metrics.reading import BackgroundReading
from bgworkers.settings import Settings


@dataclass(frozen=True)
class OutboxMetrics:
    enqueued: Counter
    published: Counter
    publish_failures: Counter
    pruned: Counter

    @classmethod
    def build(cls, registry: CollectorRegistry) -> OutboxMetrics:
        counter = functools.partial(Counter, registry=registry)
        return cls(
            enqueued=counter(
                "bgworkers_outbox_enqueued_total",
                "Messages written to the outbox (a repeated dedupe key is not counted).",
                ["queue"],
            ),
            published=counter(
                "bgworkers_outbox_published_total",
                "Outbox messages RabbitMQ confirmed and the relay marked published.",
                ["queue"],
            ),
            publish_failures=counter(
                "bgworkers_outbox_publish_failures_total",
                "Relay batches that failed (broker or database error); their rows are retried.",
            ),
            pruned=counter(
                "bgworkers_outbox_pruned_total",
                "Published outbox rows deleted after the retention period.",
            ),
        )

    def zero(self) -> None:
        """Every queue at 0, so ``increase()`` sees the first event."""
        from bgworkers import queues

        for queue in queues.ALL:
            self.enqueued.labels(queue)
            self.published.labels(queue)


OUTBOX_METRICS: LazyMetrics[OutboxMetrics] = LazyMetrics(OutboxMetrics.build)


@dataclass(frozen=True)
class Backlog:
    """Unpublished rows: how many, and the age in seconds of the oldest due one."""

    count: int
    oldest_age_s: float


def read_backlog(session: Session, *, now: datetime) -> Backlog:
    """One indexed query; rows delayed into the future count but have age 0 until due."""
    from bgworkers.outbox.models import OutboxMessage

    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    count, oldest = session.execute(
        select(func.count(), func.min(table.c.available_at)).where(table.c.published_at.is_(None))
    ).one()
    if oldest is not None and oldest.tzinfo is None:  # SQLite's MIN() bypasses the column type
        oldest = oldest.replace(tzinfo=UTC)
    age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    return Backlog(count=int(count), oldest_age_s=age)


def read_backlog_now(settings: Settings, *, now: datetime | None = None) -> Backlog:
    from bgworkers.db.engine import get_engine, utcnow

    with Session(get_engine(settings)) as session:
        return read_backlog(session, now=now or utcnow())


class OutboxBacklogCollector(BackgroundReading[Backlog], Collector):
    """``bgworkers_outbox_backlog_*`` from the latest background reading of the table."""

    def __init__(self, read: Callable[[], Backlog], *, interval_s: float, start: bool = True):
        initial = Backlog(0, 0.0)
        super().__init__(
            "outbox-backlog", read, initial=initial, interval_s=interval_s, start=start
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backlog, last_read, _ = self.snapshot()
        count = GaugeMetricFamily(
            "bgworkers_outbox_backlog_messages",
            "Outbox rows not yet published (from the database).",
        )
        age = GaugeMetricFamily(
            "bgworkers_outbox_backlog_oldest_age_seconds",
            "Seconds since the oldest unpublished outbox row became due (0 when none).",
        )
        if last_read:  # nothing until the database has answered once
            count.add_metric([], backlog.count)
            age.add_metric([], backlog.oldest_age_s)
        yield count
        yield age
