"""What the other domains read of the sync domain: the calendar events synced for a user.

The rows are :class:`~bgworkers.sync.models.CalendarEvent` (read their documented fields;
all-day events sit at midnight UTC of their dates with an exclusive end).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from bgworkers.sync.models import CalendarEvent

__all__ = ["CalendarEvent", "calendar_events_of_users", "calendar_events_starting"]


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


def calendar_events_of_users(
    session: Session, *, user_ids: Sequence[int], since: datetime, before: datetime
) -> Sequence[Any]:
    """The users' events starting in ``[since, before)``, by user and start time.

    Core rows with the documented fields of :class:`CalendarEvent` (``user_id``, ``title``,
    ``status``, ``all_day``, ``starts_at``, ``ends_at``): one query for a page of users, and
    no ORM objects to build, where a page of daily summaries needs only these.
    """
    table = CalendarEvent.__table__  # type: ignore[attr-defined]
    c = table.c
    return session.execute(
        core_select(c.user_id, c.title, c.status, c.all_day, c.starts_at, c.ends_at)
        .where(c.user_id.in_(list(user_ids)), c.starts_at < before, c.starts_at >= since)
        .order_by(c.user_id, c.starts_at)
    ).all()
