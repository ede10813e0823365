"""What the rest of the application calls to create, change and cancel reminders.

These are plain functions working in the caller's transaction (the application shows
:class:`~bgworkers.reminders.validation.ReminderValidationError`'s ``problems`` to the user
right away, which a queued message could not do). Firing is the workers' job: a reminder is
picked up by the every-minute check once ``next_due_at`` has come.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Final

from sqlmodel import Session

from bgworkers.db.engine import utcnow
from bgworkers.email.api import cancel_queued_emails
from bgworkers.errors import PermanentError
from bgworkers.reminders.firing import occurrence_key_prefix
from bgworkers.reminders.models import Reminder, ReminderStatus
from bgworkers.reminders.validation import (
    ReminderValidationError,
    ValidReminder,
    validate_reminder,
    validate_text,
)
from bgworkers.users.models import User

__all__ = [
    "UNCHANGED",
    "ReminderNotFound",
    "ReminderValidationError",
    "cancel_reminder",
    "create_reminder",
    "update_reminder",
]


class _Unchanged(Enum):
    UNCHANGED = "unchanged"


#: Default of :func:`update_reminder`'s ``recurrence``: keep it (None removes it).
UNCHANGED: Final = _Unchanged.UNCHANGED


class ReminderNotFound(PermanentError):
    """No such reminder (or user) -- or it belongs to someone else."""


def create_reminder(
    *,
    session: Session,
    user_id: int,
    text: str,
    due_at: datetime,
    recurrence: str | None = None,
    timezone: str | None = None,
    channel: str = "email",
    now: datetime | None = None,
) -> Reminder:
    """Validate and schedule a reminder; ``timezone`` defaults to the user's.

    A naive ``due_at`` is a wall time in that zone (as the user typed it).
    """
    user = session.get(User, user_id)
    if user is None:
        raise ReminderNotFound(f"user {user_id} does not exist")
    now = now or utcnow()
    valid = validate_reminder(
        text=text,
        due_at=due_at,
        timezone=timezone or user.timezone,
        recurrence=recurrence,
        now=now,
        channel=channel,
    )
    row = Reminder(user_id=user_id, text=valid.text, timezone=valid.timezone, due_at=valid.due_at)
    _apply(row, valid)
    row.created_at = row.updated_at = now
    session.add(row)
    session.flush()
    return row


def _apply(row: Reminder, valid: ValidReminder) -> None:
    """Schedule ``row`` from a validated reminder, starting at its first occurrence."""
    row.text = valid.text
    row.timezone = valid.timezone
    row.due_at = valid.due_at
    row.next_due_at = valid.due_at
    row.recurrence = valid.recurrence
    row.channel = valid.channel
    row.status = ReminderStatus.SCHEDULED
    row.dispatched_at = None
    row.last_error = None


def _owned(session: Session, reminder_id: int, user_id: int | None) -> Reminder:
    row = session.get(Reminder, reminder_id, with_for_update=True)
    if row is None or (user_id is not None and row.user_id != user_id):
        raise ReminderNotFound(f"reminder {reminder_id} does not exist")
    return row


def update_reminder(
    *,
    session: Session,
    reminder_id: int,
    user_id: int | None = None,
    text: str | None = None,
    due_at: datetime | None = None,
    recurrence: str | _Unchanged | None = UNCHANGED,
    timezone: str | None = None,
    now: datetime | None = None,
) -> Reminder:
    """Change a reminder; only the given fields change. ``user_id`` checks ownership.

    Changing the time, zone or recurrence re-validates everything and schedules the
    reminder again from the new first occurrence (also a fired or failed one). Without a new
    ``due_at`` the old time is kept; if it has passed, a repeating reminder moves to its
    rule's next occurrence after ``now``, while a one-off needs a new ``due_at`` (the error
    says so). A cancelled reminder cannot be changed.
    """
    row = _owned(session, reminder_id, user_id)
    if row.status == ReminderStatus.CANCELLED:
        raise ReminderValidationError(["This reminder was cancelled; create a new one instead."])
    now = now or utcnow()
    timing_changed = (
        due_at is not None or timezone is not None or not isinstance(recurrence, _Unchanged)
    )
    if not timing_changed:
        row.text = validate_text(row.text if text is None else text)
    else:
        valid = validate_reminder(
            text=row.text if text is None else text,
            due_at=due_at or row.next_due_at or row.due_at,
            timezone=timezone or row.timezone,
            recurrence=row.recurrence if isinstance(recurrence, _Unchanged) else recurrence,
            now=now,
            channel=row.channel,
            catch_up=due_at is None,
        )
        _apply(row, valid)
    row.updated_at = now
    session.add(row)
    session.flush()
    return row


def cancel_reminder(
    *,
    session: Session,
    reminder_id: int,
    user_id: int | None = None,
    now: datetime | None = None,
) -> Reminder:
    """Cancel a reminder for good; cancelling twice is fine. A due message then skips it.

    Emails of occurrences that already fired but are still ``queued`` in the outbox (an
    SMTP outage, a backlog) are marked ``failed`` ("reminder cancelled") so they are not
    sent; an email already being sent or sent is left alone.
    """
    row = _owned(session, reminder_id, user_id)
    now = now or utcnow()
    if row.status != ReminderStatus.CANCELLED:
        row.status = ReminderStatus.CANCELLED
        row.next_due_at = None
        row.updated_at = now
        session.add(row)
        session.flush()
    cancel_queued_emails(
        session=session,
        key_prefix=occurrence_key_prefix(reminder_id),
        reason="reminder cancelled",
        now=now,
    )
    return row
