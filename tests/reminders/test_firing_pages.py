"""Reminders fired by the page: as one at a time, once each, a bad reminder handed on alone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.email.models import OutboxEmail
from bgworkers.reminders.api import cancel_reminder
from bgworkers.reminders.firing import fire_reminder, fire_reminder_page, occurrence_key
from bgworkers.reminders.formatting import render_reminder
from bgworkers.reminders.models import Reminder, ReminderStatus
from bgworkers.users.models import User
from tests.reminders.helpers import DUE, new_reminder

NOW = DUE + timedelta(seconds=5)


def fire_page(engine: Engine, ids: list[int], fallback: Callable[[int], None], **kw: Any) -> int:
    with Session(engine) as session:
        written = fire_reminder_page(ids, session=session, now=NOW, fallback=fallback, **kw)
        session.commit()
    return len(written)


def test_a_page_fires_each_occurrence_once_as_one_at_a_time_would(
    db_engine: Engine, make_user: Callable[..., int], registry: Any
) -> None:
    user = make_user()
    one_off, monthly, alone = (
        new_reminder(db_engine, user),
        new_reminder(db_engine, user, recurrence="monthly"),
        new_reminder(db_engine, user),
    )
    broken = new_reminder(db_engine, make_user())
    cancelled = new_reminder(db_engine, user)
    with Session(db_engine) as session:
        cancel_reminder(session=session, reminder_id=cancelled)
        broken_row = session.get(Reminder, broken)
        assert broken_row is not None
        owner = session.get(User, broken_row.user_id)
        assert owner is not None
        owner.email = "broken"  # the address went bad after the reminder was made
        session.commit()
    page = [one_off, monthly, broken, cancelled, 999_999]
    assert fire_page(db_engine, page, pytest.fail) == 2
    assert fire_page(db_engine, page, pytest.fail) == 0  # a duplicated page message
    with Session(db_engine) as session:
        fire_reminder(alone, session=session, now=NOW, dispatch_email=[].append)
        session.commit()
        emails = {e.idempotency_key: e for e in session.exec(select(OutboxEmail)).all()}
        rows = {r.id: r for r in session.exec(select(Reminder)).all()}
    assert set(emails) == {occurrence_key(r, DUE) for r in (one_off, monthly, alone)}
    assert emails[occurrence_key(one_off, DUE)].body_text == (
        emails[occurrence_key(alone, DUE)].body_text
    )
    assert rows[one_off].status == ReminderStatus.FIRED and rows[one_off].fire_count == 1
    assert rows[monthly].status == ReminderStatus.SCHEDULED
    assert rows[monthly].next_due_at == DUE.replace(month=12)
    assert rows[broken].status == ReminderStatus.FAILED
    assert rows[cancelled].status == ReminderStatus.CANCELLED
    assert registry.get_sample_value("bgworkers_reminders_skipped_total", {"reason": "missing"})


def test_a_reminder_whose_firing_raises_is_handed_on_alone(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    user = make_user()
    ids = [new_reminder(db_engine, user) for _ in range(3)]

    def render(**fields: Any) -> Any:
        if fields["due_at"] == DUE and fields["text"] and render.calls == 1:
            render.calls += 1
            raise ValueError("cannot render this one")
        render.calls += 1
        return render_reminder(**fields)

    render.calls = 0  # type: ignore[attr-defined]
    handed_on: list[int] = []
    assert fire_page(db_engine, ids, handed_on.append, render=render) == 2
    assert handed_on == [ids[1]]
    with Session(db_engine) as session:
        row = session.get(Reminder, ids[1])
        assert row is not None and row.status == ReminderStatus.SCHEDULED  # still due
        assert row.next_due_at == DUE
        assert fire_reminder(ids[1], session=session, now=NOW, dispatch_email=[].append) == (
            "fired"
        )
