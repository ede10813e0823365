"""Daily summaries by the page: a page of users per message, a few statements per page.

Why: one message and one transaction per user cost about 15 ms of worker CPU per summary
(ORM loading, six commits, an outbox row and a ``send_email`` message per email), and the
``send_email`` messages queued behind every remaining per-user message, so the first summary
left only once the last was written. A page of :data:`PAGE_SIZE` users is read with one query
per table, written with one INSERT per table, committed once, and its emails are delivered
by the same message right after the commit (:mod:`bgworkers.email.api`'s ``deliver_now``).

The guarantees of :mod:`bgworkers.reminders.summary` hold: the ``daily_summaries`` row, unique
on (user, local date), is inserted ``ON CONFLICT DO NOTHING`` in the transaction that writes the
email, and only users whose row this transaction inserted get an email; the email's key is the
same per-user key. A user whose summary cannot be rendered (an unexpected error tied to their
data) is handed to the per-user ``send_user_daily_summary`` message in the same transaction,
so it is retried or dead-lettered alone while the rest of the page goes out.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, or_, select, update
from sqlmodel import Session

from bgworkers.db.engine import after_commit, insert_with_on_conflict
from bgworkers.email.api import Draft, add_emails, is_email_address
from bgworkers.logs.loggers import get_logger
from bgworkers.reminders.formatting import RenderedEmail, render_summary
from bgworkers.reminders.metrics import REMINDER_METRICS
from bgworkers.reminders.models import DailySummary, Reminder, ReminderStatus
from bgworkers.reminders.recurrence import to_utc
from bgworkers.reminders.summary import event_items, reminder_items, summary_key, user_zone
from bgworkers.sync.api import calendar_events_of_users
from bgworkers.users.models import User

log = get_logger(__name__)

#: Users per ``send_daily_summary_page`` message: small enough that a page's emails leave
#: within a second of its start, large enough that the per-message cost is shared.
PAGE_SIZE = 50

_USERS = User.__table__.c  # type: ignore[attr-defined]
_REMINDERS = Reminder.__table__.c  # type: ignore[attr-defined]
_SUMMARIES = DailySummary.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Due:
    user: Any  # a Core row of users
    zone: ZoneInfo
    start: datetime  # the local day's bounds, UTC
    end: datetime


@dataclass
class _Counts:
    """What a page sent and skipped, counted when its transaction commits; nothing if it rolls
    back. Why: a page whose INSERT or commit fails is rolled back and split, and each user's
    own message counts them again; counted as the page went, they were counted twice."""

    sent: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def record(self) -> None:
        metrics = REMINDER_METRICS.get()
        metrics.summaries_sent.inc(self.sent)
        for reason, count in self.skipped.items():
            if count:
                metrics.summaries_skipped.labels(reason).inc(count)


def write_summary_page(
    user_ids: Sequence[int],
    local_date: date,
    *,
    session: Session,
    now: datetime,
    fallback: Callable[[int], None],
    render: Callable[..., RenderedEmail] = render_summary,
) -> list[int]:
    """Write the summaries of a page of users to the email outbox; return the new email ids.

    ``fallback(user_id)`` records a per-user message (in this transaction) for a user whose
    summary raised while rendering (``render``). The caller commits.
    """
    counts = _Counts()
    after_commit(session, counts.record)
    due = _due_users(session, user_ids, local_date, now, counts.skipped)
    if not due:
        return []
    drafts = _render(session, due, local_date, fallback, render)
    recorded = _record(session, list(drafts), local_date, now)
    counts.skipped["already_sent"] += len(drafts) - len(recorded)  # recorded meanwhile
    written = add_emails(session, [drafts[u] for u in recorded], now=now)
    links = [
        {"uid": u, "eid": written[drafts[u].key]} for u in recorded if drafts[u].key in written
    ]
    if links:
        session.execute(
            update(_SUMMARIES)
            .where(_SUMMARIES.c.user_id == bindparam("uid"), _SUMMARIES.c.local_date == local_date)
            .values(email_id=bindparam("eid")),
            links,
            execution_options={"synchronize_session": False},
        )
    counts.sent = len(links)
    log.info("daily_summary_page_written", users=len(user_ids), written=len(links))
    return [link["eid"] for link in links]


def _due_users(
    session: Session,
    user_ids: Sequence[int],
    local_date: date,
    now: datetime,
    skipped: Counter[str],
) -> list[_Due]:
    users = session.execute(
        select(
            _USERS.id,
            _USERS.email,
            _USERS.display_name,
            _USERS.timezone,
            _USERS.daily_summary_enabled,
        ).where(_USERS.id.in_(list(user_ids)))
    ).all()
    done = set(
        session.execute(
            select(_SUMMARIES.c.user_id).where(
                _SUMMARIES.c.user_id.in_(list(user_ids)), _SUMMARIES.c.local_date == local_date
            )
        ).scalars()
    )
    skipped["missing"] += len(set(user_ids) - {u.id for u in users})
    due: list[_Due] = []
    for user in users:
        zone = user_zone(user.timezone)
        reason = _skip_reason(user, done, local_date, now.astimezone(zone).date())
        if reason is not None:
            skipped[reason] += 1
            continue
        start = to_utc(datetime.combine(local_date, time()), zone)
        end = to_utc(datetime.combine(local_date + timedelta(days=1), time()), zone)
        due.append(_Due(user, zone, start, end))
    return due


def _skip_reason(user: Any, done: set[int], local_date: date, today: date) -> str | None:
    if not user.daily_summary_enabled:
        return "opted_out"
    if not is_email_address(user.email):
        return "bad_address"
    if local_date != today:
        return "stale"
    return "already_sent" if user.id in done else None


def _render(
    session: Session,
    due: list[_Due],
    local_date: date,
    fallback: Callable[[int], None],
    render: Callable[..., RenderedEmail],
) -> dict[int, Draft]:
    """One draft per user, in user id order; a user whose rendering raises goes to ``fallback``."""
    low, high = min(d.start for d in due), max(d.end for d in due)
    ids = [d.user.id for d in due]
    reminders = _by_user(_reminder_rows(session, ids, low, high))
    events = _by_user(
        calendar_events_of_users(
            session, user_ids=ids, since=low - timedelta(days=31), before=high + timedelta(days=1)
        )
    )
    drafts: dict[int, Draft] = {}
    for d in due:
        user_id = d.user.id
        try:
            rendered = render(
                local_date=local_date,
                tz=d.zone,
                reminders=reminder_items(reminders[user_id], start=d.start, end=d.end),
                events=event_items(
                    events[user_id], local_date=local_date, start=d.start, end=d.end
                ),
                display_name=d.user.display_name,
            )
        except Exception as exc:  # noqa: BLE001 - one user's data must not stop the page
            log.warning("daily_summary_page_fallback", user_id=user_id, error=repr(exc)[:500])
            fallback(user_id)
            continue
        drafts[user_id] = Draft(
            recipient=d.user.email,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            key=summary_key(user_id, local_date),
        )
    return drafts


def _reminder_rows(session: Session, ids: list[int], low: datetime, high: datetime) -> Any:
    return session.execute(
        select(
            _REMINDERS.user_id,
            _REMINDERS.text,
            _REMINDERS.timezone,
            _REMINDERS.due_at,
            _REMINDERS.recurrence,
            _REMINDERS.status,
            _REMINDERS.next_due_at,
            _REMINDERS.last_fired_at,
        ).where(
            _REMINDERS.user_id.in_(ids),
            _REMINDERS.status != ReminderStatus.CANCELLED,
            or_(
                and_(
                    _REMINDERS.status == ReminderStatus.SCHEDULED,
                    _REMINDERS.next_due_at < high,
                ),
                and_(_REMINDERS.last_fired_at >= low, _REMINDERS.last_fired_at < high),
            ),
        )
    ).all()


def _by_user(rows: Any) -> defaultdict[int, list[Any]]:
    grouped: defaultdict[int, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row.user_id].append(row)
    return grouped


def _record(session: Session, user_ids: list[int], local_date: date, now: datetime) -> list[int]:
    """Insert the ``daily_summaries`` rows; return the users whose row this call inserted."""
    if not user_ids:
        return []
    rows = [{"user_id": u, "local_date": local_date, "created_at": now} for u in user_ids]
    statement = _insert_summary(session.get_bind().dialect.name)
    return sorted(set(session.execute(statement, rows).scalars()))


@functools.cache
def _insert_summary(dialect: str) -> Any:
    """Built once per dialect and run as an executemany (one cached compiled statement)."""
    insert = insert_with_on_conflict(dialect)(_SUMMARIES)
    return insert.on_conflict_do_nothing(index_elements=["user_id", "local_date"]).returning(
        _SUMMARIES.c.user_id
    )
