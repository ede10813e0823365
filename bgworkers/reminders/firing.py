"""Firing due reminders: find them (indexed), fan them out, fire each exactly once.

Why each occurrence fires once: :func:`fire_reminder` moves ``next_due_at`` from the
occurrence it read to the next one with a single conditional UPDATE (``WHERE status =
'scheduled' AND next_due_at = <occurrence>``), in the same transaction that writes the email.
A second delivery of the message, or an overlapping run, matches no row and does nothing;
the email's idempotency key (reminder id + occurrence) backs this up. A cancelled reminder
never matches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import or_, update
from sqlalchemy import select as core_select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from bgworkers.email.api import Draft, add_emails, enqueue_email, is_email_address
from bgworkers.logs.loggers import get_logger
from bgworkers.reminders.formatting import RenderedEmail, render_reminder
from bgworkers.reminders.metrics import REMINDER_METRICS
from bgworkers.reminders.models import Reminder, ReminderStatus
from bgworkers.reminders.recurrence import RecurrenceError, next_occurrence, parse_rule
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
    row = session.get(Reminder, reminder_id)
    user = session.get(User, row.user_id) if row is not None else None
    step = _fire(session, row, user, now, reminder_id)
    if not isinstance(step, Draft):
        return step
    email = enqueue_email(
        session=session,
        recipient=step.recipient,
        subject=step.subject,
        text=step.text,
        html=step.html,
        idempotency_key=step.key,
        now=now,
        dispatch=dispatch_email,
        urgent=True,  # a reminder is due now: the urgent lane, never behind a bulk backlog
    )
    log.info("reminder_fired", reminder_id=reminder_id, email_id=email.id)
    return "fired"


#: Reminders per ``fire_reminder_page`` message.
PAGE_SIZE = 50

_REMINDERS = Reminder.__table__  # type: ignore[attr-defined]
_R = _REMINDERS.c
_U = User.__table__.c  # type: ignore[attr-defined]


def fire_reminder_page(
    reminder_ids: Sequence[int],
    *,
    session: Session,
    now: datetime,
    fallback: Callable[[int], None],
    render: Callable[..., RenderedEmail] = render_reminder,
) -> list[int]:
    """Fire a page of due reminders in the caller's transaction; return the new email ids.

    The same steps as :func:`fire_reminder` for each (the conditional UPDATE per occurrence
    included), with one query for the reminders, one for their users and one INSERT for
    the emails. A reminder whose firing raises (its text or rule trips the code) is handed
    to ``fallback`` (a ``fire_reminder`` message in this transaction) and fired alone.
    """
    rows = session.execute(
        core_select(*_R).where(_R.id.in_(list(reminder_ids))).order_by(_R.id)
    ).all()
    user_ids = list({row.user_id for row in rows})
    users = {u.id: u for u in session.execute(core_select(*_U).where(_U.id.in_(user_ids))).all()}
    missing = len(set(reminder_ids)) - len(rows)
    if missing:
        REMINDER_METRICS.get().skipped.labels("missing").inc(missing)
    drafts: list[Draft] = []
    for row in rows:
        try:
            step = _fire(session, row, users.get(row.user_id), now, row.id, render)
        except SQLAlchemyError:
            raise  # the transaction is broken: the whole page is retried
        except Exception as exc:  # noqa: BLE001 - one reminder's data must not stop the page
            log.warning("reminder_page_fallback", reminder_id=row.id, error=repr(exc)[:500])
            fallback(row.id)
            continue
        if isinstance(step, Draft):
            drafts.append(step)
    written = add_emails(session, drafts, now=now)
    log.info("reminder_page_fired", reminders=len(reminder_ids), emails=len(written))
    return list(written.values())


def _fire(
    session: Session,
    row: Any,
    user: Any,
    now: datetime,
    reminder_id: int,
    render: Callable[..., RenderedEmail] = render_reminder,
) -> Draft | Outcome:
    """Decide, render, then advance one reminder (``row``: ORM or Core); its email's draft.

    Rendering comes before the conditional UPDATE, so an error in it leaves the occurrence
    due (and retried) instead of advanced without its email.
    """
    metrics = REMINDER_METRICS.get()
    reason = _skip_reason(row, now)
    if reason is not None or row is None or row.next_due_at is None:
        metrics.skipped.labels(reason or "missing").inc()
        log.info("reminder_not_fired", reminder_id=reminder_id, reason=reason)
        return "skipped"
    occurrence = row.next_due_at
    zone = load_zone(row.timezone)
    try:
        rule = parse_rule(row.recurrence) if row.recurrence else None
    except RecurrenceError as exc:
        return _mark_failed(session, row, occurrence, now, f"bad recurrence: {exc}")
    if user is None or zone is None:
        problem = "the user no longer exists" if user is None else "unknown time zone"
        return _mark_failed(session, row, occurrence, now, problem)
    if not is_email_address(user.email):
        return _mark_failed(session, row, occurrence, now, "the user's email address is invalid")
    try:
        following = (
            next_occurrence(rule, first=row.due_at, tz=zone, after=max(now, occurrence))
            if rule is not None
            else None
        )
    except RecurrenceError as exc:  # e.g. a cron rule written by hand that never fires
        return _mark_failed(session, row, occurrence, now, f"bad recurrence: {exc}")
    rendered = render(
        text=row.text,
        due_at=occurrence,
        tz=zone,
        now=now,
        rule=rule,
        next_due_at=following,
        display_name=user.display_name,
    )
    if not _advance(session, row, occurrence, now, following=following):
        metrics.skipped.labels("raced").inc()
        return "skipped"
    metrics.fired.labels("true" if rule else "false").inc()
    metrics.delay.observe(max((now - occurrence).total_seconds(), 0))
    return Draft(
        recipient=user.email,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        key=occurrence_key(reminder_id, occurrence),
    )


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
    row: Any,
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
            _R.id == row.id,
            _R.status == ReminderStatus.SCHEDULED,
            _R.next_due_at == occurrence,
        )
        .values(**values)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _mark_failed(
    session: Session, row: Any, occurrence: datetime, now: datetime, problem: str
) -> Outcome:
    if not _advance(
        session, row, occurrence, now, following=None, status=ReminderStatus.FAILED, error=problem
    ):
        return "skipped"
    REMINDER_METRICS.get().failed.inc()
    log.error("reminder_failed", reminder_id=row.id, error=problem)
    return "failed"
