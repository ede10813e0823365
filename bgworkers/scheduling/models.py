"""Tables of scheduling: one row per claimed run, one state row per job."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from bgworkers.db.engine import UtcDateTime


class ScheduledRun(SQLModel, table=True):
    """One scheduled tick of one job, claimed by the worker that runs it.

    The primary key ``(job, tick)`` is the once-per-tick guarantee: a second message for the
    same tick (two schedulers, a restart inside the minute, a catch-up) cannot claim it.
    ``status``: ``running``, ``retrying``, ``succeeded``, ``failed`` (dead-lettered) or
    ``skipped_overlap`` (the previous run was still going). ``duration_s`` is in seconds.
    """

    __tablename__ = "scheduled_runs"

    job: str = Field(primary_key=True, max_length=100)
    tick: datetime = Field(primary_key=True, sa_type=UtcDateTime)
    status: str = Field(max_length=20)
    message_id: str = Field(max_length=64)
    cron: str = Field(default="", max_length=100)
    attempts: int = Field(default=0)
    claimed_at: datetime = Field(sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    duration_s: float | None = Field(default=None)
    error: str | None = Field(default=None, max_length=500)


class ScheduledJobState(SQLModel, table=True):
    """Per job: which message runs it now (the no-overlap lock) and the missed-tick count.

    ``checked_until`` is used on the catch-up job's row only: the latest tick up to which
    missed ticks were looked for.
    """

    __tablename__ = "scheduled_job_state"

    job: str = Field(primary_key=True, max_length=100)
    running_message_id: str | None = Field(default=None, max_length=64)
    running_tick: datetime | None = Field(default=None, sa_type=UtcDateTime)
    running_since: datetime | None = Field(default=None, sa_type=UtcDateTime)
    checked_until: datetime | None = Field(default=None, sa_type=UtcDateTime)
    missed_ticks: int = Field(default=0)
    last_missed_tick: datetime | None = Field(default=None, sa_type=UtcDateTime)
