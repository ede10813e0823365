"""Gauges measured by one run of one worker process, kept in the database and exported by
the worker group's metrics process.

Why: a value such as the database size is measured once a week by whichever worker process
runs ``optimize_database``. Held in that process's gauge, it vanishes at the next restart and
the panel stays empty for a week; with several worker groups, only one group would show it.
Written to the ``monitoring_gauges`` table instead, every group's metrics process exports the
last measurement, from its start on (aggregate with ``max by (...)``, as for queue depths).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlmodel import Session, select

from bgworkers.metrics.models import RecordedGauge
from bgworkers.metrics.reading import BackgroundReading
from bgworkers.settings import Settings


@dataclass(frozen=True)
class RecordedFamily:
    """A gauge exported from the table: its help text and label names (a fixed set)."""

    help: str
    labels: tuple[str, ...]


#: Every gauge kept in the table; only these are exported (a row of another name is ignored).
FAMILIES: Mapping[str, RecordedFamily] = {
    "bgworkers_maintenance_database_size_bytes": RecordedFamily(
        "Size in bytes of bgworkers' tables (PostgreSQL) or database file (SQLite), measured "
        "before and after the last optimize_database run (kept in the database).",
        ("backend", "phase"),
    ),
}


def record_gauge(
    session: Session, name: str, labels: Mapping[str, str], value: float, *, now: datetime
) -> None:
    """Keep ``value`` as the gauge's latest measurement (insert or replace the row)."""
    family = FAMILIES[name]
    if set(labels) != set(family.labels):
        raise ValueError(f"{name} takes labels {family.labels}, got {sorted(labels)}")
    key = json.dumps(dict(labels), sort_keys=True)
    row = session.get(RecordedGauge, (name, key))
    if row is None:
        session.add(RecordedGauge(name=name, labels=key, value=value, measured_at=now))
    else:
        row.value, row.measured_at = value, now
        session.add(row)


def read_recorded_gauges(session: Session) -> list[RecordedGauge]:
    return list(session.exec(select(RecordedGauge)).all())


class RecordedGaugeCollector(BackgroundReading[list[RecordedGauge]], Collector):
    """Exports the table's gauges from the latest background reading (a scrape never waits)."""

    def __init__(
        self, read: Callable[[], list[RecordedGauge]], *, interval_s: float, start: bool = True
    ) -> None:
        super().__init__("recorded-gauges", read, initial=[], interval_s=interval_s, start=start)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rows, _, _ = self.snapshot()
        families = {
            name: GaugeMetricFamily(name, family.help, labels=list(family.labels))
            for name, family in FAMILIES.items()
        }
        for row in rows:
            if row.name in FAMILIES:  # a row of another name is ignored
                labels = json.loads(row.labels)
                values = [str(labels.get(k, "")) for k in FAMILIES[row.name].labels]
                families[row.name].add_metric(values, row.value)
        yield from families.values()


def recorded_gauge_collector(settings: Settings) -> RecordedGaugeCollector:
    """The collector the worker group's metrics process serves (read every
    ``BGW_QUEUE_DEPTH_INTERVAL_S`` seconds, like the job health)."""
    from bgworkers.db.engine import get_engine

    def read() -> list[RecordedGauge]:
        with Session(get_engine(settings)) as session:
            return read_recorded_gauges(session)

    return RecordedGaugeCollector(read, interval_s=settings.queue_depth_interval_s)
