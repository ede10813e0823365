"""Tables of the reminders domain: reminders and the record of daily summaries sent."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from bgworkers.db.engine import UtcDateTime, utcnow


class ReminderStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting for next_due_at
    FIRED = "fired"  # a one-off reminder that went out
    CANCELLED = "cancelled"  # final: never fires again
    FAILED = "failed"  # firing was impossible (see last_error)


class Reminder(SQLModel, table=True):
    """A reminder (an "AI task"): what to tell the user, and when, in the user's zone.

    ``due_at`` is the first occurrence as entered (UTC); with ``timezone`` it anchors the
    recurrence (local time of day, weekday, day of month). ``next_due_at`` is the next
    occurrence to fire, or None once nothing is left; the every-minute check reads it
    through the ``(status, next_due_at)`` index.
    """

    __tablename__ = "reminders"
    __table_args__ = (Index("ix_reminders_status_next_due_at", "status", "next_due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    text: str = Field(sa_type=Text)
    timezone: str = Field(max_length=64)
    due_at: datetime = Field(sa_type=UtcDateTime)
    recurrence: str | None = Field(default=None, max_length=200)
    channel: str = Field(default="email", max_length=16)
    status: str = Field(default=ReminderStatus.SCHEDULED, max_length=16)
    next_due_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_fired_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    fire_count: int = Field(default=0)
    #: When the check last sent a ``fire_reminder`` message for the current occurrence.
    dispatched_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class DailySummary(SQLModel, table=True):
    """One row per user and local day whose summary was written to the outbox.

    The unique ``(user_id, local_date)`` pair is what makes "never two summaries a day" hold
    across restarts and overlapping runs.
    """

    __tablename__ = "daily_summaries"
    __table_args__ = (
        UniqueConstraint("user_id", "local_date", name="uq_daily_summaries_user_id_local_date"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id")
    local_date: date
    email_id: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
