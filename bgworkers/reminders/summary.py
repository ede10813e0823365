"""The daily summary: at 08:00 in each user's zone, one email with the day's events and reminders.

When: ``send_daily_email_summary`` runs every quarter hour. A user is due once the local
time is between :data:`SUMMARY_HOUR` (08:00) and :data:`CATCH_UP_UNTIL_HOUR` (12:00) and no
summary was recorded for that local date. So the summary goes out at the first run at or
after 08:00; if the workers or the scheduler were down at 08:00, it still goes out at the
first run before noon; after noon the day's summary is skipped (it would be stale). Zones
with :30 or :45 offsets are covered because the runs are on the quarter hours.

Why never twice: each user's summary is written by one per-user message, in a transaction
that inserts a ``daily_summaries`` row unique on (user, local date) together with the
outbox email (keyed by the same pair). A duplicate message or an overlapping run finds the
row and stops; the outbox key stops a second email even if the row check races.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, or_, update
from sqlmodel import Session, col, select

from bgworkers.db.engine import after_commit, insert_if_absent
from bgworkers.email.api import enqueue_email, is_email_address
from bgworkers.logs.loggers import get_logger
from bgworkers.reminders.formatting import SummaryItem, render_summary
from bgworkers.reminders.metrics import REMINDER_METRICS
from bgworkers.reminders.models import DailySummary, Reminder, ReminderStatus
from bgworkers.reminders.recurrence import RecurrenceError, occurrences_between, parse_rule, to_utc
from bgworkers.reminders.validation import load_zone
from bgworkers.sync.api import calendar_events_starting
from bgworkers.users.models import User

log = get_logger(__name__)

SUMMARY_HOUR = 8
CATCH_UP_UNTIL_HOUR = 12
#: A reminder repeating hourly lists at most this many occurrences in one summary.
MAX_OCCURRENCES_PER_REMINDER = 24

Outcome = Literal["sent", "skipped"]


def user_zone(name: str) -> ZoneInfo:
    """The user's zone; an unknown name (the application did not validate it) counts as UTC."""
    return load_zone(name) or ZoneInfo("UTC")


def due_dates_by_zone(zone_names: Iterable[str], *, now: datetime) -> dict[date, list[str]]:
    """The zones where it is now summary time, grouped by their local date."""
    groups: dict[date, list[str]] = defaultdict(list)
    for name in zone_names:
        local = now.astimezone(user_zone(name))
        if SUMMARY_HOUR <= local.hour < CATCH_UP_UNTIL_HOUR:
            groups[local.date()].append(name)
    return dict(groups)


def dispatch_daily_summaries(
    *,
    session: Session,
    now: datetime,
    dispatch: Callable[[list[tuple[int, str]]], None],
    page_size: int = 500,
) -> int:
    """Hand each user due a summary to ``dispatch`` as ``(user_id, local date ISO)`` pages.

    Reads only; users are walked by id in pages, so memory stays bounded. A user whose
    per-user message has not finished yet may be dispatched again by the next run, which
    the per-user step tolerates.
    """
    zones = session.exec(
        select(User.timezone).where(col(User.daily_summary_enabled).is_(True)).distinct()
    ).all()
    total = 0
    for local_date, names in due_dates_by_zone(zones, now=now).items():
        already = exists().where(
            col(DailySummary.user_id) == User.id, col(DailySummary.local_date) == local_date
        )
        last_id = 0
        while True:
            ids = session.exec(
                select(User.id)
                .where(
                    col(User.daily_summary_enabled).is_(True),
                    col(User.timezone).in_(names),
                    col(User.id) > last_id,
                    ~already,
                )
                .order_by(col(User.id))
                .limit(page_size)
            ).all()
            page = [(i, local_date.isoformat()) for i in ids if i is not None]
            if not page:
                break
            dispatch(page)
            total += len(page)
            last_id = page[-1][0]
    REMINDER_METRICS.get().summaries_dispatched.inc(total)
    return total


def summary_key(user_id: int, local_date: date) -> str:
    return f"daily-summary:{user_id}:{local_date.isoformat()}"


def send_daily_summary(
    user_id: int,
    local_date: date,
    *,
    session: Session,
    now: datetime,
    dispatch_email: Callable[[int], None] | None = None,
) -> Outcome:
    """Write one user's summary for ``local_date`` to the outbox, unless done or stale.

    Counted when the caller commits (nothing if it rolls back): a summary whose commit fails
    is written again by the message's retry, and counted then.
    """
    user = session.get(User, user_id)
    zone = user_zone(user.timezone) if user is not None else ZoneInfo("UTC")
    reason = _skip_reason(session, user, local_date, now.astimezone(zone).date())
    if reason is not None or user is None:
        after_commit(
            session, REMINDER_METRICS.get().summaries_skipped.labels(reason or "missing").inc
        )
        log.info("daily_summary_skipped", user_id=user_id, reason=reason)
        return "skipped"
    start = to_utc(datetime.combine(local_date, time()), zone)
    end = to_utc(datetime.combine(local_date + timedelta(days=1), time()), zone)
    rendered = render_summary(
        local_date=local_date,
        tz=zone,
        reminders=reminders_of_day(session, user_id=user_id, start=start, end=end, tz=zone),
        events=load_calendar_events(session, user_id=user_id, local_date=local_date, tz=zone),
        display_name=user.display_name,
    )
    if not insert_if_absent(
        session,
        DailySummary,
        conflict_columns=("user_id", "local_date"),
        user_id=user_id,
        local_date=local_date,
        created_at=now,
    ):  # an overlapping run recorded it after our check
        after_commit(session, REMINDER_METRICS.get().summaries_skipped.labels("already_sent").inc)
        return "skipped"
    email = enqueue_email(
        session=session,
        recipient=user.email,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        idempotency_key=summary_key(user_id, local_date),
        now=now,
        dispatch=dispatch_email,
    )
    session.execute(
        update(DailySummary)
        .where(col(DailySummary.user_id) == user_id, col(DailySummary.local_date) == local_date)
        .values(email_id=email.id)
    )
    after_commit(session, REMINDER_METRICS.get().summaries_sent.inc)
    log.info("daily_summary_written", user_id=user_id, email_id=email.id)
    return "sent"


def _skip_reason(session: Session, user: User | None, local_date: date, today: date) -> str | None:
    if user is None:
        return "missing"
    if not user.daily_summary_enabled:
        return "opted_out"
    if not is_email_address(user.email):
        return "bad_address"
    if local_date != today:
        return "stale"
    done = session.exec(
        select(DailySummary.id).where(
            DailySummary.user_id == user.id, DailySummary.local_date == local_date
        )
    ).first()
    return "already_sent" if done is not None else None


def reminders_of_day(
    session: Session, *, user_id: int, start: datetime, end: datetime, tz: ZoneInfo
) -> list[SummaryItem]:
    """Reminder occurrences in ``[start, end)``: those fired already and those to come."""
    rows = session.exec(
        select(Reminder).where(
            Reminder.user_id == user_id,
            col(Reminder.status) != ReminderStatus.CANCELLED,
            or_(
                and_(
                    col(Reminder.status) == ReminderStatus.SCHEDULED,
                    col(Reminder.next_due_at) < end,
                ),
                and_(col(Reminder.last_fired_at) >= start, col(Reminder.last_fired_at) < end),
            ),
        )
    ).all()
    return reminder_items(rows, start=start, end=end)


def reminder_items(rows: Iterable[Any], *, start: datetime, end: datetime) -> list[SummaryItem]:
    """The items of ``rows`` (reminders, ORM or Core rows) in ``[start, end)``, by time.

    Rows outside the range give nothing, so a page may pass rows read for a wider range.
    """
    items: list[SummaryItem] = []
    for row in rows:
        if row.last_fired_at is not None and start <= row.last_fired_at < end:
            items.append(SummaryItem(row.last_fired_at, row.text, "reminder", note="done"))
        if row.status != ReminderStatus.SCHEDULED or row.next_due_at is None:
            continue
        if row.next_due_at >= end:
            continue
        try:
            rule = parse_rule(row.recurrence) if row.recurrence else None
        except RecurrenceError:
            continue
        upcoming = (
            occurrences_between(
                rule,
                first=row.due_at,
                tz=user_zone(row.timezone),
                start=max(start, row.next_due_at),
                end=end,
                limit=MAX_OCCURRENCES_PER_REMINDER,
            )
            if rule is not None
            else [row.next_due_at]
            if row.next_due_at >= start
            else []
        )
        items += [SummaryItem(moment, row.text, "reminder") for moment in upcoming]
    return sorted(items, key=lambda item: item.starts_at or start)


def load_calendar_events(
    session: Session, *, user_id: int, local_date: date, tz: ZoneInfo
) -> list[SummaryItem]:
    """The user's calendar events on ``local_date`` (timed ones overlapping the local day).

    All-day events are stored at midnight UTC of their dates with an exclusive end; only
    their dates count.
    """
    start = to_utc(datetime.combine(local_date, time()), tz)
    end = to_utc(datetime.combine(local_date + timedelta(days=1), time()), tz)
    rows = calendar_events_starting(
        session,
        user_id=user_id,
        since=start - timedelta(days=31),
        before=end + timedelta(days=1),
    )
    return event_items(rows, local_date=local_date, start=start, end=end)


def event_items(
    rows: Iterable[Any], *, local_date: date, start: datetime, end: datetime
) -> list[SummaryItem]:
    """The items of ``rows`` (calendar events) on ``local_date``, whose UTC bounds are
    ``[start, end)``; all-day events first, then by start time."""
    items: list[SummaryItem] = []
    for event in rows:
        note = "" if event.status == "confirmed" else event.status
        if event.all_day:
            first = event.starts_at.astimezone(UTC).date()
            last = event.ends_at.astimezone(UTC).date() if event.ends_at else first
            if first <= local_date < max(last, first + timedelta(days=1)):
                items.append(SummaryItem(None, event.title, "event", note=note))
            continue
        finish = event.ends_at or event.starts_at
        if event.starts_at < end and (finish > start or start <= event.starts_at):
            items.append(SummaryItem(event.starts_at, event.title, "event", event.ends_at, note))
    return sorted(items, key=lambda item: (item.starts_at is not None, item.starts_at or start))
