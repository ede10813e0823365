"""Tables of the maintenance domain."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from bgworkers.db.engine import UtcDateTime


class SchedulerHeartbeat(SQLModel, table=True):
    """One row per scheduler source: when it last ticked and when a worker saw the tick.

    The gap between ``scheduled_at`` and now says whether the scheduler is alive; the gap
    between ``scheduled_at`` and ``processed_at`` says how far behind the workers are.
    """

    __tablename__ = "scheduler_heartbeat"

    source: str = Field(primary_key=True, max_length=64)
    scheduled_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    processed_at: datetime = Field(sa_type=UtcDateTime)
    beats: int = Field(default=0)
