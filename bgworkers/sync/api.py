"""What the other domains read of the sync domain: the calendar events synced for a user,
and (for the console and ``bgworkers queues``) how long sync has waited on provider limits.

The rows are :class:`~bgworkers.sync.models.CalendarEvent` (read their documented fields;
all-day events sit at midnight UTC of their dates with an exclusive end).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select as core_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bgworkers.sync.models import CalendarEvent, RateLimitSlot

__all__ = [
    "CalendarEvent",
    "RateLimitWaits",
    "calendar_events_of_users",
    "calendar_events_starting",
    "prune_idle_rate_limit_rows",
    "rate_limit_waits",
]


def prune_idle_rate_limit_rows(engine: Engine, *, idle_s: float) -> int:
    """Delete the shared rate-limit rows unused for ``idle_s`` seconds (the maintenance job);
    see :func:`bgworkers.sync.shared_limits.prune_idle_rows`."""
    from bgworkers.sync.shared_limits import prune_idle_rows

    return prune_idle_rows(engine, idle_s=idle_s)


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


@dataclass(frozen=True)
class RateLimitWaits:
    """One provider's shared rate limits: seconds requests waited for their slots in all
    (credentials only; a global cap's own row is not added in), how many credentials the
    table knows, and how many are paused by a 429 now."""

    provider: str
    waited_s: float
    credentials: int
    paused_now: int


def rate_limit_waits(session: Session, *, now: float | None = None) -> list[RateLimitWaits]:
    """Per provider, from the shared slot table (``bgworkers/sync/shared_limits.py``).

    ``now``: seconds since the epoch (this host's clock: close enough for a report).
    """
    now = time.time() if now is None else now
    totals: dict[str, list[float]] = {}
    for row in session.exec(select(RateLimitSlot)):
        provider, _, kind = row.key.partition(":")
        figures = totals.setdefault(provider, [0.0, 0, 0])
        if kind != "all":
            figures[0] += row.waited_s
            figures[1] += 1
        figures[2] += row.paused_until > now
    return [
        RateLimitWaits(provider, round(f[0], 3), int(f[1]), int(f[2]))
        for provider, f in sorted(totals.items())
    ]


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
