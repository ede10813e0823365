"""A reminder whose firing raises for good is closed as failed; an outage never closes one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from bgworkers.db.engine import session_scope
from bgworkers.errors import InvalidArguments
from bgworkers.reminders.api import cancel_reminder
from bgworkers.reminders.firing import dispatch_due_reminders, fire_reminder
from bgworkers.reminders.giving_up import close_if_given_up, gives_up
from bgworkers.reminders.models import Reminder, ReminderStatus
from tests.reminders.helpers import DUE, new_reminder

NOW = DUE + timedelta(seconds=5)
YEAR_ONE = datetime(1, 1, 1, tzinfo=UTC)


def unwritable_reminder(engine: Engine, user_id: int) -> int:
    """A reminder due in year 1 in New York: formatting its occurrence raises OverflowError."""
    reminder_id = new_reminder(engine, user_id)
    with Session(engine) as session:
        row = session.get(Reminder, reminder_id)
        assert row is not None
        row.timezone, row.next_due_at = "America/New_York", YEAR_ONE
        session.add(row)
        session.commit()
    return reminder_id


def firing_error(engine: Engine, reminder_id: int) -> Exception:
    with Session(engine) as session, pytest.raises(Exception) as caught:
        fire_reminder(reminder_id, session=session, now=NOW, dispatch_email=[].append)
    assert isinstance(caught.value, Exception)
    return caught.value


def database_away_error(tmp_path: Path) -> OperationalError:
    """The error a real connection to a database that cannot be opened raises."""
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite'}")
    with pytest.raises(OperationalError) as caught:
        engine.connect()
    return caught.value


def row(engine: Engine, reminder_id: int) -> Reminder:
    with Session(engine) as session:
        found = session.get(Reminder, reminder_id)
        assert found is not None
        return found


def test_the_last_attempt_closes_a_reminder_whose_firing_always_raises(
    db_engine: Engine,
    make_user: Callable[..., int],
    registry: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reminder_id = unwritable_reminder(db_engine, make_user())
    error = firing_error(db_engine, reminder_id)
    assert isinstance(error, OverflowError)

    def give_up(final: bool) -> str | None:
        return close_if_given_up(
            reminder_id,
            error,
            final_attempt=final,
            open_session=lambda: session_scope(db_engine),
            now=NOW,
        )

    assert give_up(final=False) is None  # a retry follows: the reminder stays due
    assert row(db_engine, reminder_id).status == ReminderStatus.SCHEDULED
    with caplog.at_level(logging.INFO):
        assert give_up(final=True) == "failed"
    closed = row(db_engine, reminder_id)
    assert closed.status == ReminderStatus.FAILED
    assert closed.next_due_at is None
    assert closed.last_error == "firing failed: OverflowError: date value out of range"
    assert registry.get_sample_value("bgworkers_reminders_failed_total") == 1
    assert caplog.text.count("reminder_failed") == 1
    with Session(db_engine) as session:  # the check no longer hands it out
        assert dispatch_due_reminders(session=session, now=NOW, dispatch=pytest.fail) == 0
    assert give_up(final=True) == "skipped"  # a second give-up finds it closed
    assert registry.get_sample_value("bgworkers_reminders_failed_total") == 1


def test_a_permanent_error_closes_the_reminder_at_once(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    reminder_id = new_reminder(db_engine, make_user())
    outcome = close_if_given_up(
        reminder_id,
        InvalidArguments("fire_reminder: reminder_id: bad"),
        final_attempt=False,
        open_session=lambda: session_scope(db_engine),
        now=NOW,
    )
    assert outcome == "failed"
    assert row(db_engine, reminder_id).status == ReminderStatus.FAILED


@pytest.mark.parametrize(
    "outage",
    ["database", "broker", "time_limit", "network"],
)
def test_an_outage_on_the_last_attempt_never_closes_the_reminder(
    db_engine: Engine, make_user: Callable[..., int], tmp_path: Path, outage: str
) -> None:
    errors: dict[str, Exception] = {
        "database": database_away_error(tmp_path),
        "broker": BrokerConnectionError("connection refused"),
        "time_limit": TimeLimitExceeded(),
        "network": ConnectionResetError(104, "Connection reset by peer"),
    }
    reminder_id = new_reminder(db_engine, make_user())
    outcome = close_if_given_up(
        reminder_id,
        errors[outage],
        final_attempt=True,
        open_session=lambda: session_scope(db_engine),  # the database is back meanwhile
        now=NOW,
    )
    assert outcome is None
    kept = row(db_engine, reminder_id)
    assert kept.status == ReminderStatus.SCHEDULED and kept.last_error is None


def test_a_close_that_fails_is_logged_not_raised(
    db_engine: Engine,
    make_user: Callable[..., int],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reminder_id = unwritable_reminder(db_engine, make_user())
    away = create_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite'}")
    outcome = close_if_given_up(
        reminder_id,
        firing_error(db_engine, reminder_id),
        final_attempt=True,
        open_session=lambda: session_scope(away),
        now=NOW,
    )
    assert outcome is None
    assert "reminder_not_closed" in caplog.text
    assert row(db_engine, reminder_id).status == ReminderStatus.SCHEDULED  # handed out again


def test_a_reminder_cancelled_meanwhile_is_left_alone(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    reminder_id = unwritable_reminder(db_engine, make_user())
    error = firing_error(db_engine, reminder_id)
    with Session(db_engine) as session:
        cancel_reminder(session=session, reminder_id=reminder_id)
        session.commit()
    outcome = close_if_given_up(
        reminder_id,
        error,
        final_attempt=True,
        open_session=lambda: session_scope(db_engine),
        now=NOW,
    )
    assert outcome == "skipped"
    assert row(db_engine, reminder_id).status == ReminderStatus.CANCELLED


def test_only_a_failure_that_is_no_outage_is_given_up_on() -> None:
    assert gives_up(ValueError("bad"), final_attempt=True)
    assert not gives_up(ValueError("bad"), final_attempt=False)
    assert not gives_up(TimeLimitExceeded(), final_attempt=True)
