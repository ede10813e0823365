"""The table of recorded gauges (see :mod:`bgworkers.metrics.recorded_gauges`)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from bgworkers.db.engine import UtcDateTime


class RecordedGauge(SQLModel, table=True):
    """The last value of a gauge that one run of one worker process measures (e.g. the
    database size, measured weekly), kept so the worker group's metrics process can export it
    after any restart. ``labels`` is the label set as a JSON object with sorted keys."""

    __tablename__ = "monitoring_gauges"

    name: str = Field(primary_key=True, max_length=200)
    labels: str = Field(primary_key=True, max_length=500)
    value: float
    measured_at: datetime = Field(sa_type=UtcDateTime)
