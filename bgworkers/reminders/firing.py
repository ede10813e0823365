"""Firing due reminders: find them (indexed), fan them out, fire each exactly once.

Why each occurrence fires once: :func:`fire_reminder` moves ``next_due_at`` from the
occurrence it read to the next one with a single conditional UPDATE (``WHERE status =
'scheduled' AND next_due_at = <occurrence>``), in the same transaction that writes the email.
A second delivery of the message, or an overlapping run, matches no row and does nothing;
the email's idempotency key (reminder id + occurrence) backs this up. A cancelled reminder
never matches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import bindparam, case, or_, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from bgworkers.email.api import Draft, add_emails, enqueue_email, is_email_address
from bgworkers.logs.loggers import get_logger
from bgworkers.reminders.formatting import RenderedEmail, render_reminder
from bgworkers.reminders.metrics import REMINDER_METRICS
from bgworkers.reminders.models import Reminder, ReminderStatus
from bgworkers.reminders.recurrence import RecurrenceError, next_occurrence, parse_rule
from bgworkers.reminders.tally import Tally
from bgworkers.reminders.validation import load_zone
from bgworkers.users.models import User

log = get_logger(__name__)

#: A due reminder whose message has not fired it within this time is dispatched again.
REDISPATCH_AFTER = timedelta(minutes=5)

Outcome = Literal["fired", "skipped", "failed"]


def dispatch_due_reminders(
    *,
    session: Session,
    now: datetime,
    dispatch: Callable[[list[int]], None],
    page_size: int = 500,
    max_rows: int = 50_000,
) -> int:
    """Hand every due reminder to ``dispatch``, one committed page of ids at a time.

    Reads the ``(status, next_due_at)`` index. A dispatched reminder is stamped so the
    next minute's check leaves it alone unless it is still unfired after
    :data:`REDISPATCH_AFTER`. Returns the number of ids dispatched.
    """
    dispatched = 0
    while dispatched < max_rows:
        ids = [
            i
            for i in session.exec(
                select(Reminder.id)
                .where(
                    col(Reminder.status) == ReminderStatus.SCHEDULED,
                    col(Reminder.next_due_at) <= now,
                    or_(
                        col(Reminder.dispatched_at).is_(None),
                        col(Reminder.dispatched_at) < now - REDISPATCH_AFTER,
                    ),
                )
                .order_by(col(Reminder.next_due_at))
                .limit(min(page_size, max_rows - dispatched))
                .with_for_update(skip_locked=True)
            ).all()
            if i is not None
        ]
        if not ids:
            break
        session.execute(
            update(Reminder)
            .where(col(Reminder.id).in_(ids))
            .values(dispatched_at=now)
            .execution_options(synchronize_session=False)
        )
        dispatch(ids)  # in the stamping transaction: the outbox publishes them on commit
        session.commit()
        dispatched += len(ids)
        REMINDER_METRICS.get().dispatched.inc(len(ids))
    return dispatched


def occurrence_key_prefix(reminder_id: int) -> str:
    """What the outbox idempotency keys of all occurrences of a reminder start with."""
    return f"reminder:{reminder_id}:"


def occurrence_key(reminder_id: int, occurrence: datetime) -> str:
    """The outbox idempotency key of one occurrence of a reminder."""
    return f"{occurrence_key_prefix(reminder_id)}{occurrence:%Y%m%dT%H%M%SZ}"


def fire_reminder(
    reminder_id: int,
    *,
    session: Session,
    now: datetime,
    dispatch_email: Callable[[int], None] | None = None,
) -> Outcome:
    """Fire the reminder's due occurrence: write its email, advance or close it."""
    tally = Tally.on_commit(session, now)
    row = session.get(Reminder, reminder_id)
    user = session.get(User, row.user_id) if row is not None else None
    step = _decide(row, user, now)
    if isinstance(step, Skip):
        return tally.skip(step.reason, reminder_id)
    if isinstance(step, Failure):
        return _mark_failed(session, tally, step, now)
    if not _advance(session, step.reminder_id, step.occurrence, now, following=step.following):
        return tally.skip("raced", reminder_id)
    email = enqueue_email(
        session=session,
        recipient=step.draft.recipient,
        subject=step.draft.subject,
        text=step.draft.text,
        html=step.draft.html,
        idempotency_key=step.draft.key,
        now=now,
        dispatch=dispatch_email,
        urgent=True,  # a reminder is due now: the urgent lane, never behind a bulk backlog
    )
    tally.fired.append(step)
    log.info("reminder_fired", reminder_id=reminder_id, email_id=email.id)
    return "fired"


#: Reminders per ``fire_reminder_page`` message.
PAGE_SIZE = 50

_REMINDERS = Reminder.__table__  # type: ignore[attr-defined]
_R = _REMINDERS.c
_U = User.__table__.c  # type: ignore[attr-defined]
#: What a page reads: the reminder columns firing needs, and its user's, in one query.
_PAGE_COLUMNS = (
    _R.id, _R.user_id, _R.text, _R.timezone, _R.due_at, _R.recurrence, _R.status,
    _R.next_due_at, _U.id.label("user_row_id"), _U.email, _U.display_name,
)  # fmt: skip


def fire_reminder_page(
    reminder_ids: Sequence[int],
    *,
    session: Session,
    now: datetime,
    fallback: Callable[[int], None],
    render: Callable[..., RenderedEmail] = render_reminder,
) -> list[int]:
    """Fire a page of due reminders in the caller's transaction; return the new email ids.

    Set-based, with the same guarantees as :func:`fire_reminder` for each reminder: one
    query reads the reminders with their users, one conditional UPDATE advances every
    occurrence the page fires (:func:`_advance_page`: a row someone else advanced meanwhile
    is not returned, and its email is not written), and one INSERT writes the emails. A
    reminder whose firing raises (its text, time or rule trips the code) is handed to
    ``fallback`` (a ``fire_reminder`` message in this transaction) and fired alone; the
    others go on.
    """
    query = (
        core_select(*_PAGE_COLUMNS)
        .select_from(_REMINDERS.outerjoin(User.__table__, _U.id == _R.user_id))  # type: ignore[attr-defined]
        .where(_R.id.in_(list(reminder_ids)))
        .order_by(_R.id)
    )
    tally = Tally.on_commit(session, now)
    rows = session.execute(query).all()
    tally.missing = len(set(reminder_ids)) - len(rows)
    firings: list[Firing] = []
    for row in rows:
        user = row if row.user_row_id is not None else None
        try:
            step = _decide(row, user, now, render)
        except Exception as exc:  # noqa: BLE001 - one reminder's data must not stop the page
            log.warning("reminder_page_fallback", reminder_id=row.id, error=repr(exc)[:500])
            fallback(row.id)
            continue
        if isinstance(step, Skip):
            tally.skip(step.reason, row.id)
        elif isinstance(step, Failure):
            _mark_failed(session, tally, step, now)
        else:
            firings.append(step)
    advanced = _advance_page(session, firings, now)
    for firing in firings:
        if firing.reminder_id in advanced:
            tally.fired.append(firing)
        else:
            tally.skip("raced", firing.reminder_id)
    written = add_emails(session, [firing.draft for firing in tally.fired], now=now)
    log.info("reminder_page_fired", reminders=len(reminder_ids), emails=len(written))
    return list(written.values())


@dataclass(frozen=True)
class Firing:
    """An occurrence to fire: where the reminder moves, and the email that goes with it."""

    reminder_id: int
    occurrence: datetime
    following: datetime | None
    recurring: bool
    draft: Draft


@dataclass(frozen=True)
class Failure:
    """An occurrence that can never fire: the reminder is closed as ``failed``."""

    reminder_id: int
    occurrence: datetime
    problem: str


@dataclass(frozen=True)
class Skip:
    """Nothing to fire (``reason``: the reminder's status, ``not_due`` or ``missing``)."""

    reason: str


def _decide(
    row: Any,
    user: Any,
    now: datetime,
    render: Callable[..., RenderedEmail] = render_reminder,
) -> Firing | Failure | Skip:
    """What firing ``row`` (ORM or Core; ``user``: anything with ``email`` and
    ``display_name``, or None) means now. Reads and writes nothing: the caller writes.

    The email is rendered here, before any UPDATE, so an error in it leaves the occurrence
    due (and retried) instead of advanced without its email.
    """
    reason = _skip_reason(row, now)
    if reason is not None:
        return Skip(reason)
    occurrence: datetime = row.next_due_at
    zone = load_zone(row.timezone)
    try:
        rule = parse_rule(row.recurrence) if row.recurrence else None
    except RecurrenceError as exc:
        return Failure(row.id, occurrence, f"bad recurrence: {exc}")
    if user is None or zone is None:
        problem = "the user no longer exists" if user is None else "unknown time zone"
        return Failure(row.id, occurrence, problem)
    if not is_email_address(user.email):
        return Failure(row.id, occurrence, "the user's email address is invalid")
    try:
        following = (
            next_occurrence(rule, first=row.due_at, tz=zone, after=max(now, occurrence))
            if rule is not None
            else None
        )
    except RecurrenceError as exc:  # e.g. a cron rule written by hand that never fires
        return Failure(row.id, occurrence, f"bad recurrence: {exc}")
    rendered = render(
        text=row.text,
        due_at=occurrence,
        tz=zone,
        now=now,
        rule=rule,
        next_due_at=following,
        display_name=user.display_name,
    )
    draft = Draft(
        recipient=user.email,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        key=occurrence_key(row.id, occurrence),
    )
    return Firing(row.id, occurrence, following, rule is not None, draft)


def _skip_reason(row: Any, now: datetime) -> str | None:
    if row is None:
        return "missing"
    if row.status != ReminderStatus.SCHEDULED:
        return str(row.status)
    if row.next_due_at is None or row.next_due_at > now:
        return "not_due"
    return None


def _advance(
    session: Session,
    reminder_id: int,
    occurrence: datetime,
    now: datetime,
    *,
    following: datetime | None,
    status: ReminderStatus | None = None,
    error: str | None = None,
) -> bool:
    """Move the reminder past ``occurrence``; False if someone else already did."""
    if status is None:
        status = ReminderStatus.SCHEDULED if following is not None else ReminderStatus.FIRED
    values: dict[str, object] = {
        "status": status,
        "next_due_at": following,
        "dispatched_at": None,
        "updated_at": now,
        "last_error": error,
    }
    if error is None:
        values.update(last_fired_at=now, fire_count=_R.fire_count + 1)
    # A Core UPDATE: the ORM's bulk-UPDATE path, built per call, was a third of a page's CPU.
    result = session.execute(
        _REMINDERS.update()
        .where(
            _R.id == reminder_id,
            _R.status == ReminderStatus.SCHEDULED,
            _R.next_due_at == occurrence,
        )
        .values(**values)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _advance_page(session: Session, firings: Sequence[Firing], now: datetime) -> set[int]:
    """Move every reminder of ``firings`` past its occurrence with one conditional UPDATE
    (per :data:`PAGE_SIZE` of them); return the ids it moved.

    The same condition as :func:`_advance`, row by row (``next_due_at`` must still be the
    occurrence the page read, through a ``CASE`` on the id): a row that a duplicate message,
    an overlapping run or a cancellation changed meanwhile is left alone and not returned.
    On PostgreSQL a concurrent UPDATE of the same row waits for this transaction and then
    matches nothing. Why one statement: one UPDATE per reminder was half of a page's time
    (a database round trip each).
    """
    moved: set[int] = set()
    for first in range(0, len(firings), PAGE_SIZE):
        chunk = firings[first : first + PAGE_SIZE]
        values: dict[str, Any] = {"advanced_at": now}
        for n, firing in enumerate(chunk):
            values[f"r{n}_id"] = firing.reminder_id
            values[f"r{n}_occurrence"] = firing.occurrence
            values[f"r{n}_following"] = firing.following
            values[f"r{n}_status"] = (
                ReminderStatus.SCHEDULED if firing.following is not None else ReminderStatus.FIRED
            )
        rows = session.execute(_advance_statement(len(chunk)), values)
        moved.update(int(reminder_id) for (reminder_id,) in rows)
    return moved


@functools.cache
def _advance_statement(size: int) -> Any:
    """The UPDATE of :func:`_advance_page` for ``size`` reminders, built once per size, with
    named parameters (``r<n>_id``, ``r<n>_occurrence``, ``r<n>_following``, ``r<n>_status``,
    ``advanced_at``): building its three CASEs for each page was most of its CPU."""
    utc = _R.next_due_at.type
    ids = [bindparam(f"r{n}_id", type_=_R.id.type) for n in range(size)]

    def by_id(name: str, type_: Any) -> Any:
        return case(
            *((_R.id == ids[n], bindparam(f"r{n}_{name}", type_=type_)) for n in range(size))
        )

    now = bindparam("advanced_at", type_=utc)
    return (
        _REMINDERS.update()
        .where(
            _R.id.in_(ids),
            _R.status == ReminderStatus.SCHEDULED,
            _R.next_due_at == by_id("occurrence", utc),
        )
        .values(
            status=by_id("status", _R.status.type),
            next_due_at=by_id("following", utc),
            dispatched_at=None,
            updated_at=now,
            last_error=None,
            last_fired_at=now,
            fire_count=_R.fire_count + 1,
        )
        .returning(_R.id)
    )


def close_as_failed(reminder_id: int, problem: str, *, session: Session, now: datetime) -> Outcome:
    """Close the reminder's due occurrence as ``failed`` with ``problem`` as its last error.

    For a firing that raised for good (see :mod:`bgworkers.reminders.giving_up`); a reminder
    that is no longer scheduled and due (fired, cancelled meanwhile) is left alone.
    """
    tally = Tally.on_commit(session, now)
    row = session.get(Reminder, reminder_id)
    reason = _skip_reason(row, now)
    if reason is not None or row is None or row.next_due_at is None:
        return tally.skip(reason or "missing", reminder_id)
    return _mark_failed(session, tally, Failure(reminder_id, row.next_due_at, problem), now)


def _mark_failed(session: Session, tally: Tally, failure: Failure, now: datetime) -> Outcome:
    if not _advance(
        session,
        failure.reminder_id,
        failure.occurrence,
        now,
        following=None,
        status=ReminderStatus.FAILED,
        error=failure.problem,
    ):
        return "skipped"
    tally.failed.append(failure)
    return "failed"
