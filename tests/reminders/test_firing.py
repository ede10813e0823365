from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bgworkers.email.models import OutboxEmail
from bgworkers.reminders.api import (
    UNCHANGED,
    ReminderNotFound,
    ReminderValidationError,
    cancel_reminder,
    create_reminder,
    update_reminder,
)
from bgworkers.reminders.firing import dispatch_due_reminders, fire_reminder, occurrence_key
from bgworkers.reminders.models import Reminder, ReminderStatus
from bgworkers.users.models import User
from tests.reminders.helpers import CREATED, DUE, new_reminder


def fire(engine: Engine, reminder_id: int, now: datetime, sent: list[int]) -> str:
    with Session(engine) as session:
        outcome = fire_reminder(reminder_id, session=session, now=now, dispatch_email=sent.append)
        session.commit()
    return outcome


def test_one_off_reminder_fires_once(
    db_engine: Engine, make_user: Callable[..., int], registry
) -> None:
    reminder_id = new_reminder(db_engine, make_user())
    sent: list[int] = []
    assert fire(db_engine, reminder_id, DUE - timedelta(seconds=1), sent) == "skipped"
    assert fire(db_engine, reminder_id, DUE + timedelta(seconds=5), sent) == "fired"
    assert fire(db_engine, reminder_id, DUE + timedelta(seconds=6), sent) == "skipped"
    with Session(db_engine) as session:
        row = session.get(Reminder, reminder_id)
        assert row is not None
        assert row.status == ReminderStatus.FIRED
        assert row.next_due_at is None
        assert row.fire_count == 1
        assert row.last_fired_at == DUE + timedelta(seconds=5)
        emails = session.exec(select(OutboxEmail)).all()
    assert [e.id for e in emails] == sent
    [email] = emails
    assert email.idempotency_key == occurrence_key(reminder_id, DUE)
    assert email.recipient.endswith("@example.org")
    assert email.subject == "Reminder: Water the plants"
    assert "Wednesday 25 November 2026 at 10:00 (Europe/Paris)" in email.body_text
    assert registry.get_sample_value("bgworkers_reminders_fired_total", {"recurring": "false"}) == 1
    assert registry.get_sample_value("bgworkers_reminders_skipped_total", {"reason": "fired"}) == 1


def test_recurring_reminder_advances_on_local_time(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    reminder_id = new_reminder(db_engine, make_user(), recurrence="monthly")
    sent: list[int] = []
    assert fire(db_engine, reminder_id, DUE + timedelta(seconds=1), sent) == "fired"
    with Session(db_engine) as session:
        row = session.get(Reminder, reminder_id)
        assert row is not None
        assert row.status == ReminderStatus.SCHEDULED
        # 25 December, 10:00 in Paris (winter time, UTC+1).
        assert row.next_due_at == datetime(2026, 12, 25, 9, 0, tzinfo=UTC)
        assert "Repeats every month; next time: Friday 25 December 2026" in (
            session.exec(select(OutboxEmail)).one().body_text
        )
    # A month later the next occurrence fires and gets its own email.
    assert fire(db_engine, reminder_id, datetime(2026, 12, 25, 9, 0, tzinfo=UTC), sent) == "fired"
    assert len(sent) == 2


def test_late_firing_skips_missed_occurrences(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    reminder_id = new_reminder(db_engine, make_user(), recurrence="daily")
    sent: list[int] = []
    assert fire(db_engine, reminder_id, DUE + timedelta(days=3, hours=1), sent) == "fired"
    with Session(db_engine) as session:
        row = session.get(Reminder, reminder_id)
        assert row is not None
        assert row.next_due_at == DUE + timedelta(days=4)
    assert len(sent) == 1


def test_cancelled_reminder_never_fires(db_engine: Engine, make_user: Callable[..., int]) -> None:
    reminder_id = new_reminder(db_engine, make_user(), recurrence="daily")
    with Session(db_engine) as session:
        cancel_reminder(session=session, reminder_id=reminder_id)
        cancel_reminder(session=session, reminder_id=reminder_id)  # twice is fine
        session.commit()
    sent: list[int] = []
    assert fire(db_engine, reminder_id, DUE + timedelta(minutes=1), sent) == "skipped"
    assert sent == []
    with Session(db_engine) as session:
        assert session.exec(select(OutboxEmail)).all() == []
        with pytest.raises(ReminderValidationError, match="cancelled"):
            update_reminder(session=session, reminder_id=reminder_id, text="again")


def test_stale_message_after_a_concurrent_fire_does_nothing(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    """Two messages for the same occurrence that both read the row before either commits."""
    reminder_id = new_reminder(db_engine, make_user(), recurrence="daily")
    first: list[int] = []
    with Session(db_engine) as slow:
        row = slow.get(Reminder, reminder_id)  # loads the occurrence before the other fires
        assert row is not None and row.next_due_at == DUE
        assert fire(db_engine, reminder_id, DUE, first) == "fired"
        second: list[int] = []
        assert fire_reminder(reminder_id, session=slow, now=DUE, dispatch_email=second.append) == (
            "skipped"
        )
        slow.commit()
    assert len(first) == 1 and second == []


def delete_user_behind_the_foreign_key(engine: Engine, user_id: int) -> None:
    """Remove a user row that reminders still reference (as a manual cleanup or restore can)."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # outside a transaction
        else:
            connection.exec_driver_sql("SET session_replication_role = replica")
        connection.execute(delete(User).where(col(User.id) == user_id))
        connection.commit()
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        else:
            connection.exec_driver_sql("SET session_replication_role = DEFAULT")
        connection.commit()


def test_reminder_of_a_deleted_user_fails(
    db_engine: Engine, make_user: Callable[..., int], registry
) -> None:
    user_id = make_user()
    reminder_id = new_reminder(db_engine, user_id, recurrence="daily")
    delete_user_behind_the_foreign_key(db_engine, user_id)
    with Session(db_engine) as session:
        assert session.get(User, user_id) is None
    assert fire(db_engine, reminder_id, DUE, []) == "failed"
    with Session(db_engine) as session:
        row = session.get(Reminder, reminder_id)
        assert row is not None
        assert (row.status, row.last_error) == (
            ReminderStatus.FAILED,
            "the user no longer exists",
        )
        assert row.next_due_at is None
        assert session.exec(select(OutboxEmail)).all() == []
    assert registry.get_sample_value("bgworkers_reminders_failed_total") == 1
    assert fire(db_engine, reminder_id, DUE + timedelta(days=1), []) == "skipped"


@pytest.mark.parametrize(
    ("recurrence", "reason"),
    [("every blue moon", "bad recurrence"), ("cron:0 9 30 2 *", "never fires")],
    ids=["bad_rule", "cron_that_never_fires"],
)
def test_reminder_with_an_unusable_recurrence_fails(
    db_engine: Engine, make_user: Callable[..., int], recurrence: str, reason: str
) -> None:
    reminder_id = new_reminder(db_engine, make_user())
    with Session(db_engine) as session:
        row = session.get(Reminder, reminder_id)
        assert row is not None
        row.recurrence = recurrence  # written past the validation by hand
        session.add(row)
        session.commit()
    assert fire(db_engine, reminder_id, DUE, []) == "failed"
    with Session(db_engine) as session:
        row = session.get(Reminder, reminder_id)
        assert row is not None
        assert row.status == ReminderStatus.FAILED
        assert row.last_error is not None and reason in row.last_error


def test_due_check_pages_and_does_not_redispatch(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    user_id = make_user()
    ids = [new_reminder(db_engine, user_id) for _ in range(7)]
    later = new_reminder(db_engine, user_id)
    with Session(db_engine) as session:
        row = session.get(Reminder, later)
        assert row is not None
        row.next_due_at = DUE + timedelta(hours=1)
        session.add(row)
        session.commit()
    pages: list[list[int]] = []
    with Session(db_engine) as session:
        count = dispatch_due_reminders(session=session, now=DUE, dispatch=pages.append, page_size=3)
    assert count == 7
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sorted(i for p in pages for i in p) == ids
    with Session(db_engine) as session:  # the next minute: already on their way
        assert (
            dispatch_due_reminders(
                session=session, now=DUE + timedelta(minutes=1), dispatch=pages.append
            )
            == 0
        )
    with Session(db_engine) as session:  # still unfired long after: dispatched again
        assert (
            dispatch_due_reminders(
                session=session, now=DUE + timedelta(minutes=6), dispatch=pages.append
            )
            == 7
        )


def test_update_reschedules_and_checks(db_engine: Engine, make_user: Callable[..., int]) -> None:
    owner = make_user()
    reminder_id = new_reminder(db_engine, owner)
    fire(db_engine, reminder_id, DUE, [])
    with Session(db_engine) as session:
        row = update_reminder(
            session=session,
            reminder_id=reminder_id,
            user_id=owner,
            due_at=datetime(2026, 12, 1, 18, 0),
            recurrence="weekly:tue",
            now=DUE,
        )
        assert row.status == ReminderStatus.SCHEDULED
        assert row.next_due_at == datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
        row = update_reminder(session=session, reminder_id=reminder_id, text=" New text ")
        assert row.text == "New text" and row.recurrence == "weekly:tue"
        row = update_reminder(session=session, reminder_id=reminder_id, recurrence=None, now=DUE)
        assert row.recurrence is None
        assert (
            update_reminder(
                session=session, reminder_id=reminder_id, recurrence=UNCHANGED, text="x"
            ).recurrence
            is None
        )
        with pytest.raises(ReminderValidationError) as caught:
            update_reminder(session=session, reminder_id=reminder_id, text="")
        assert caught.value.problems == [
            "The reminder text is empty; say what you want to be reminded of."
        ]
        with pytest.raises(ReminderNotFound):
            update_reminder(session=session, reminder_id=reminder_id, user_id=owner + 1, text="y")
        with pytest.raises(ReminderNotFound):
            cancel_reminder(session=session, reminder_id=999_999)
        with pytest.raises(ReminderNotFound):
            create_reminder(session=session, user_id=999_999, text="x", due_at=DUE, now=CREATED)


def test_create_uses_the_users_zone(db_engine: Engine, make_user: Callable[..., int]) -> None:
    user_id = make_user(timezone="America/New_York")
    with Session(db_engine) as session:
        row = create_reminder(
            session=session,
            user_id=user_id,
            text="Lunch",
            due_at=datetime(2026, 11, 25, 12, 0),
            now=CREATED,
        )
        assert row.timezone == "America/New_York"
        assert row.next_due_at == datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
        with pytest.raises(ReminderValidationError, match="in the past"):
            create_reminder(
                session=session,
                user_id=user_id,
                text="Too late",
                due_at=datetime(2026, 11, 25, 1, 0),
                now=CREATED,
            )


def test_reminder_of_a_user_with_a_broken_address_fails(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    user_id = make_user()
    reminder_id = new_reminder(db_engine, user_id, recurrence="daily")
    with Session(db_engine) as session:
        user = session.get(User, user_id)
        assert user is not None
        user.email = "not-an-address"
        session.add(user)
        session.commit()
    assert fire(db_engine, reminder_id, DUE, []) == "failed"
    with Session(db_engine) as session:
        row = session.get(Reminder, reminder_id)
        assert row is not None
        assert (row.status, row.last_error) == (
            ReminderStatus.FAILED,
            "the user's email address is invalid",
        )
        assert session.exec(select(OutboxEmail)).all() == []


def test_a_reminders_email_goes_on_the_urgent_lane(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    from bgworkers import queues
    from bgworkers.outbox.models import OutboxMessage

    reminder_id = new_reminder(db_engine, make_user())
    with Session(db_engine) as session:  # no dispatch_email: the outbox, as the actor does
        assert fire_reminder(reminder_id, session=session, now=DUE) == "fired"
        session.commit()
        [message] = session.exec(select(OutboxMessage)).all()
    assert (message.actor, message.queue) == ("send_urgent_email", queues.URGENT)
