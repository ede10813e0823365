"""What the other domains read of the sync domain: the calendar events synced for a user.

The rows are :class:`~bgworkers.sync.models.CalendarEvent` (read their documented fields;
all-day events sit at midnight UTC of their dates with an exclusive end).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from bgworkers.sync.models import CalendarEvent

__all__ = ["CalendarEvent", "calendar_events_starting"]


def calendar_events_starting(
    session: Session, *, user_id: int, since: datetime, before: datetime
) -> Sequence[CalendarEvent]:
    """The user's events starting in ``[since, before)``, by start time."""
    return session.exec(
        select(CalendarEvent)
        .where(
            CalendarEvent.user_id == user_id,
            col(CalendarEvent.starts_at) < before,
            col(CalendarEvent.starts_at) >= since,
        )
        .order_by(col(CalendarEvent.starts_at))
    ).all()
