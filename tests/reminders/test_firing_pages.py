"""Reminders fired by the page: as one at a time, once each, a bad reminder handed on alone."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
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
from tests.platform_helpers import wait_for
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


def emails_by_key(engine: Engine) -> dict[str, int]:
    """How many outbox rows each idempotency key has (the unique index says at most one)."""
    with Session(engine) as session:
        keys = [e.idempotency_key for e in session.exec(select(OutboxEmail)).all()]
    return {key: keys.count(key) for key in keys}


def test_a_poisoned_reminder_neither_fails_nor_delays_nor_duplicates_the_others(
    db_engine: Engine, make_user: Callable[..., int], registry: Any
) -> None:
    """A rule broken by hand closes its reminder; an occurrence that formatting cannot
    write (year 1, west of UTC) is handed on alone; the page's other emails are written in
    the same call, once, and a redelivered page writes nothing more."""
    users = [make_user() for _ in range(6)]
    ids = [new_reminder(db_engine, u, recurrence="daily" if n % 2 else None)
           for n, u in enumerate(users)]  # fmt: skip
    broken_rule, unwritable = ids[1], ids[4]
    with Session(db_engine) as session:
        row = session.get(Reminder, broken_rule)
        assert row is not None
        row.recurrence = "every blue moon"
        session.add(row)
        row = session.get(Reminder, unwritable)
        assert row is not None
        row.timezone, row.next_due_at = "America/New_York", datetime(1, 1, 1, tzinfo=UTC)
        session.add(row)
        session.commit()
    handed_on: list[int] = []
    healthy = [i for i in ids if i not in (broken_rule, unwritable)]
    assert fire_page(db_engine, ids, handed_on.append) == len(healthy)
    assert fire_page(db_engine, ids, handed_on.append) == 0  # the page message redelivered
    assert handed_on == [unwritable, unwritable]
    assert emails_by_key(db_engine) == {occurrence_key(i, DUE): 1 for i in healthy}
    with Session(db_engine) as session:
        rows = {r.id: r for r in session.exec(select(Reminder)).all()}
    assert rows[broken_rule].status == ReminderStatus.FAILED
    assert rows[unwritable].status == ReminderStatus.SCHEDULED  # still due, for its own message
    assert rows[unwritable].next_due_at == datetime(1, 1, 1, tzinfo=UTC)
    assert all(rows[i].fire_count == 1 for i in healthy)
    assert registry.get_sample_value("bgworkers_reminders_failed_total") == 1


def test_a_page_that_another_worker_fires_meanwhile_writes_nothing(
    db_engine: Engine, make_user: Callable[..., int], registry: Any
) -> None:
    """Two workers with one page, the second firing it between the first's read and its
    UPDATE: each occurrence fires once, the first worker's rows are counted as raced."""
    ids = [new_reminder(db_engine, make_user(), recurrence="daily") for _ in range(4)]
    other: list[int] = []

    def render(**fields: Any) -> Any:
        if not other:  # the other worker fires the whole page and commits first
            other.append(fire_page(db_engine, ids, pytest.fail))
        return render_reminder(**fields)

    assert fire_page(db_engine, ids, pytest.fail, render=render) == 0
    assert other == [len(ids)]
    assert emails_by_key(db_engine) == {occurrence_key(i, DUE): 1 for i in ids}
    assert registry.get_sample_value("bgworkers_reminders_skipped_total", {"reason": "raced"}) == 4


def test_a_page_rolled_back_fires_in_full_on_its_retry(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    """The worker dies before its commit: nothing was advanced, the retry fires each once."""
    ids = [new_reminder(db_engine, make_user(), recurrence="daily") for _ in range(3)]
    with Session(db_engine) as session:
        assert len(fire_reminder_page(ids, session=session, now=NOW, fallback=pytest.fail)) == 3
        session.rollback()
    assert emails_by_key(db_engine) == {}
    assert fire_page(db_engine, ids, pytest.fail) == 3
    assert emails_by_key(db_engine) == {occurrence_key(i, DUE): 1 for i in ids}


@pytest.mark.parametrize("db_engine", ["postgresql"], indirect=True)
def test_on_postgresql_a_concurrent_page_waits_for_the_first_and_fires_nothing(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    """The second worker's UPDATE blocks on the first's uncommitted rows, then finds them
    advanced: one email per occurrence. (SQLite has one writer at a time: the test above.)"""
    postgres_engine = db_engine
    ids = [new_reminder(postgres_engine, make_user(), recurrence="daily") for _ in range(5)]
    second: list[int] = []
    with Session(postgres_engine) as first:
        assert len(fire_reminder_page(ids, session=first, now=NOW, fallback=pytest.fail)) == 5
        worker = threading.Thread(
            target=lambda: second.append(fire_page(postgres_engine, ids, pytest.fail))
        )
        worker.start()
        wait_for(
            lambda: lock_waiters(postgres_engine) == 1,
            timeout_s=30,
            what="the second page to wait on the first page's row locks",
        )
        first.commit()
    worker.join(timeout=30)
    assert not worker.is_alive() and second == [0]
    assert emails_by_key(postgres_engine) == {occurrence_key(i, DUE): 1 for i in ids}


def lock_waiters(engine: Engine) -> int:
    """Sessions of this database waiting for a row lock."""
    with engine.connect() as conn:
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(conn.exec_driver_sql(query).scalar_one())


def test_a_zone_name_that_is_a_folder_closes_its_reminder_and_the_page_goes_on(
    db_engine: Engine, make_user: Callable[..., int], registry: Any
) -> None:
    """A zone named after a folder of the zone database ("America"; ``ZoneInfo`` raises
    OSError there) closes its reminder as failed like any unknown zone, instead of handing
    it on to fail again and again; the rest of the page fires."""
    ids = [new_reminder(db_engine, make_user(), recurrence="daily") for _ in range(3)]
    with Session(db_engine) as session:
        row = session.get(Reminder, ids[1])
        assert row is not None
        row.timezone = "America"
        session.add(row)
        session.commit()
    assert fire_page(db_engine, ids, pytest.fail) == 2
    assert emails_by_key(db_engine) == {occurrence_key(i, DUE): 1 for i in (ids[0], ids[2])}
    with Session(db_engine) as session:
        failed = session.get(Reminder, ids[1])
        assert failed is not None
        assert (failed.status, failed.last_error) == (ReminderStatus.FAILED, "unknown time zone")
    assert registry.get_sample_value("bgworkers_reminders_failed_total") == 1
