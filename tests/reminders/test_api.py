from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.outbox import deliver_email
from bgworkers.reminders.api import (
    ReminderValidationError,
    cancel_reminder,
    update_reminder,
)
from bgworkers.reminders.firing import fire_reminder
from bgworkers.reminders.models import Reminder, ReminderStatus
from tests.reminders.helpers import DUE, RecordingMailer, new_reminder

DAY = timedelta(days=1)


def fire(engine: Engine, reminder_id: int, now: datetime) -> str:
    with Session(engine) as session:
        outcome = fire_reminder(reminder_id, session=session, now=now, dispatch_email=[].append)
        session.commit()
    return outcome


def update(engine: Engine, reminder_id: int, now: datetime, **changes: object) -> Reminder:
    with Session(engine) as session:
        row = update_reminder(session=session, reminder_id=reminder_id, now=now, **changes)  # type: ignore[arg-type]
        session.commit()
        session.refresh(row)
        return row


def test_adding_a_rule_to_a_fired_one_off_starts_after_now(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    reminder_id = new_reminder(db_engine, make_user())
    assert fire(db_engine, reminder_id, DUE) == "fired"
    now = DUE + 2 * DAY + timedelta(hours=3)  # 27 Nov, 13:00 in Paris
    row = update(db_engine, reminder_id, now, recurrence="daily")
    assert row.status == ReminderStatus.SCHEDULED
    assert row.recurrence == "daily"
    assert row.next_due_at == DUE + 3 * DAY  # 28 Nov, 10:00 in Paris
    assert fire(db_engine, reminder_id, DUE + 3 * DAY) == "fired"


def test_changing_the_zone_of_an_overdue_reminder_moves_it_after_now(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    reminder_id = new_reminder(db_engine, make_user(), recurrence="daily")
    now = DUE + timedelta(minutes=30)  # due, not fired yet (an outage)
    row = update(db_engine, reminder_id, now, timezone="Europe/London")
    assert (row.status, row.timezone) == (ReminderStatus.SCHEDULED, "Europe/London")
    assert row.next_due_at == DUE + DAY  # 09:00 in London, the same wall time every day


def test_changing_only_the_zone_of_a_fired_one_off_asks_for_a_new_time(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    reminder_id = new_reminder(db_engine, make_user())
    assert fire(db_engine, reminder_id, DUE) == "fired"
    with pytest.raises(ReminderValidationError) as caught:
        update(db_engine, reminder_id, DUE + DAY, timezone="Europe/London")
    assert caught.value.problems == [
        "The time 25 Nov 2026 09:00 (Europe/London) is in the past; "
        "give the reminder a new time to schedule it again."
    ]
    row = update(
        db_engine,
        reminder_id,
        DUE + DAY,
        timezone="Europe/London",
        due_at=datetime(2026, 11, 27, 9, 0),
    )
    assert (row.status, row.next_due_at) == (ReminderStatus.SCHEDULED, DUE + 2 * DAY)


def test_a_new_past_due_time_is_still_refused(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    reminder_id = new_reminder(db_engine, make_user(), recurrence="daily")
    with pytest.raises(ReminderValidationError, match="choose a time in the future"):
        update(db_engine, reminder_id, DUE + DAY, due_at=datetime(2026, 11, 25, 11, 0))


def outbox(engine: Engine) -> dict[str, tuple[str, str | None]]:
    with Session(engine) as session:
        rows = session.exec(select(OutboxEmail).order_by(col(OutboxEmail.id))).all()
        return {row.idempotency_key: (row.status, row.last_error) for row in rows}


def set_status(engine: Engine, key: str, status: EmailStatus) -> None:
    with Session(engine) as session:
        row = session.exec(select(OutboxEmail).where(OutboxEmail.idempotency_key == key)).one()
        row.status = status
        session.add(row)
        session.commit()


def test_cancel_stops_queued_emails_of_fired_occurrences(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    user_id = make_user()
    reminder_id = new_reminder(db_engine, user_id, recurrence="daily")
    other_id = new_reminder(db_engine, user_id, recurrence="daily")
    for day in range(4):  # the SMTP server is down: the emails wait in the outbox
        assert fire(db_engine, reminder_id, DUE + day * DAY) == "fired"
    assert fire(db_engine, other_id, DUE) == "fired"
    keys = list(outbox(db_engine))
    sent, sending = keys[0], keys[2]
    set_status(db_engine, sent, EmailStatus.SENT)
    set_status(db_engine, sending, EmailStatus.SENDING)
    with Session(db_engine) as session:
        cancel_reminder(session=session, reminder_id=reminder_id, now=DUE + 4 * DAY)
        session.commit()
    after = outbox(db_engine)
    assert after[sent] == (EmailStatus.SENT, None)
    assert after[sending] == (EmailStatus.SENDING, None)
    for key in (keys[1], keys[3]):
        assert key.startswith(f"reminder:{reminder_id}:")
        assert after[key] == (EmailStatus.FAILED, "reminder cancelled")
    assert after[keys[4]] == (EmailStatus.QUEUED, None)  # the other reminder's email
    with Session(db_engine) as session:
        email = session.exec(
            select(OutboxEmail).where(OutboxEmail.idempotency_key == keys[1])
        ).one()
        mailer = RecordingMailer()
        outcome = deliver_email(
            email.id or 0,
            session=session,
            mailer=mailer,
            clock=lambda: DUE + 4 * DAY,
            sender="assistant@example.com",
            sending_timeout_s=600.0,
            max_attempts=5,
        )
        assert (outcome, mailer.sent) == ("skipped", [])
        cancel_reminder(session=session, reminder_id=reminder_id)  # twice is fine
        session.commit()
