"""Firing and daily summaries through the real RabbitMQ and a worker, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.db.engine import session_scope, utcnow
from bgworkers.email.models import OutboxEmail
from bgworkers.reminders.actors import check_due_reminders, fire_reminder, send_daily_email_summary
from bgworkers.reminders.api import cancel_reminder, create_reminder
from bgworkers.reminders.models import DailySummary, Reminder, ReminderStatus
from tests.platform_helpers import wait_for
from tests.reminders.helpers import due_reminder, settle, zone_at

pytestmark = pytest.mark.integration


def test_due_reminders_fire_once_and_arrive(
    db_engine: Engine, make_user, rabbit_worker, app_broker, mailer, registry
):  # type: ignore[no-untyped-def]
    user_id = make_user(timezone="Asia/Tokyo")
    once = due_reminder(user_id, text="Pick up the parcel")
    daily = due_reminder(user_id, text="Take the pills", recurrence="daily")
    cancelled = due_reminder(user_id, text="Never mind")
    with session_scope() as session:
        cancel_reminder(session=session, reminder_id=cancelled)
    check_due_reminders.send()
    check_due_reminders.send()  # overlapping checks
    fire_reminder.send(once)  # and a duplicated message
    wait_for(lambda: len(mailer.sent) >= 2, timeout_s=30, what="the two reminders' emails")
    settle(app_broker)
    subjects = sorted(m["Subject"] for m in mailer.sent)
    assert subjects == ["Reminder: Pick up the parcel", "Reminder: Take the pills"]
    assert all(m["To"].endswith("@example.org") for m in mailer.sent)
    with Session(db_engine) as session:
        assert session.get(Reminder, once).status == ReminderStatus.FIRED  # type: ignore[union-attr]
        recurring = session.get(Reminder, daily)
        assert recurring is not None and recurring.next_due_at is not None
        assert recurring.status == ReminderStatus.SCHEDULED
        assert recurring.next_due_at - recurring.due_at == timedelta(days=1)
        assert session.get(Reminder, cancelled).status == "cancelled"  # type: ignore[union-attr]
        assert len(session.exec(select(OutboxEmail)).all()) == 2
    assert registry.get_sample_value("bgworkers_email_sent_total") == 2
    check_due_reminders.send()  # nothing is due any more
    settle(app_broker)
    assert len(mailer.sent) == 2


def test_daily_summaries_go_out_once_per_user(
    db_engine: Engine, make_user, rabbit_worker, app_broker, mailer
):  # type: ignore[no-untyped-def]
    zone = zone_at(9)
    due = [make_user(timezone=zone) for _ in range(3)]
    make_user(timezone=zone, daily_summary_enabled=False)
    make_user(timezone=zone_at(21))  # evening there: no summary
    with session_scope() as session:
        create_reminder(
            session=session,
            user_id=due[0],
            text="Call the bank",
            due_at=utcnow() + timedelta(minutes=30),
        )
    send_daily_email_summary.send()
    send_daily_email_summary.send()  # overlapping runs
    wait_for(lambda: len(mailer.sent) >= 3, timeout_s=30, what="the daily summary's email")
    settle(app_broker)
    send_daily_email_summary.send()  # a later run the same morning
    settle(app_broker)
    assert len(mailer.sent) == 3
    assert {m["To"] for m in mailer.sent} == {f"user{n}@example.org" for n in (1, 2, 3)}
    first = next(m for m in mailer.sent if m["To"] == "user1@example.org")
    assert "Call the bank" in first.get_body(("plain",)).get_content()
    assert first["Subject"].startswith("Your day: ")
    with Session(db_engine) as session:
        records = session.exec(select(DailySummary)).all()
    assert sorted(r.user_id for r in records) == due
    assert {r.local_date for r in records} == {utcnow().astimezone(ZoneInfo(zone)).date()}


def test_a_reminder_that_always_raises_is_closed_when_its_retries_run_out(
    db_engine: Engine, make_user, rabbit_worker, app_broker, mailer, registry
):  # type: ignore[no-untyped-def]
    """Year 1 in New York cannot be formatted: every attempt raises. Once the message's
    retries are used up it is dead-lettered and the reminder closed as failed, so the minute
    check stops handing it out (it used to, every five minutes, for ever)."""
    reminder_id = due_reminder(make_user(), text="Far back")
    with session_scope() as session:
        row = session.get(Reminder, reminder_id)
        assert row is not None
        row.timezone, row.next_due_at = "America/New_York", datetime(1, 1, 1, tzinfo=UTC)
    fire_reminder.send_with_options(args=(reminder_id,), max_retries=1, min_backoff=100)

    def status() -> str:
        with Session(db_engine) as session:
            found = session.get(Reminder, reminder_id)
            assert found is not None
            return found.status

    wait_for(lambda: status() == ReminderStatus.FAILED, timeout_s=30, what="the reminder closed")
    settle(app_broker)
    with Session(db_engine) as session:
        closed = session.get(Reminder, reminder_id)
        assert closed is not None and closed.next_due_at is None
        assert closed.last_error == "firing failed: OverflowError: date value out of range"
    assert registry.get_sample_value("bgworkers_reminders_failed_total") == 1
    labels = {"queue": "reminders", "actor": "fire_reminder"}
    assert registry.get_sample_value("bgworkers_messages_retried_total", labels) == 1
    assert registry.get_sample_value("bgworkers_messages_dead_lettered_total", labels) == 1
    check_due_reminders.send()
    settle(app_broker)
    assert status() == ReminderStatus.FAILED and mailer.sent == []
