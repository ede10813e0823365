"""Daily summaries by the page: the same emails as one user at a time, once, bad users alone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bgworkers.email.models import OutboxEmail
from bgworkers.reminders.api import create_reminder
from bgworkers.reminders.formatting import render_summary
from bgworkers.reminders.models import DailySummary
from bgworkers.reminders.recurrence import to_utc
from bgworkers.reminders.summary import (
    load_calendar_events,
    reminders_of_day,
    send_daily_summary,
    user_zone,
)
from bgworkers.reminders.summary_pages import write_summary_page

NOW = datetime(2026, 11, 25, 7, 15, tzinfo=UTC)  # 08:15 in Paris
TODAY = date(2026, 11, 25)


def add_events(session: Session, user_id: int) -> None:
    models = pytest.importorskip("bgworkers.sync.models")
    day = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)  # midnight in Paris
    for n, (title, starts, hours, all_day) in enumerate(
        [
            ("Standup", day + timedelta(hours=9), 0.25, False),
            ("Yesterday", day - timedelta(hours=2), 1, False),
            ("Conference", datetime(2026, 11, 24, tzinfo=UTC), 72, True),
        ]
    ):
        session.add(
            models.CalendarEvent(
                user_id=user_id,
                calendar_id="primary",
                external_id=f"{user_id}-{n}",
                title=title,
                starts_at=starts,
                ends_at=starts + timedelta(hours=hours),
                all_day=all_day,
            )
        )


def add_reminders(session: Session, user_id: int) -> None:
    for text, local, rule in (
        ("Dentist", datetime(2026, 11, 25, 15, 30), None),
        ("Tomorrow's thing", datetime(2026, 11, 26, 9, 0), None),
        ("Stretch", datetime(2026, 11, 25, 11, 0), "cron:0 11,17 * * *"),
    ):
        create_reminder(
            session=session, user_id=user_id, text=text, due_at=local, recurrence=rule,
            now=datetime(2026, 11, 20, tzinfo=UTC),
        )  # fmt: skip


def expected_text(session: Session, user_id: int, timezone: str) -> str:
    """What the one-user path renders for this user (read before anything is written)."""
    zone = user_zone(timezone)
    start = to_utc(datetime.combine(TODAY, datetime.min.time()), zone)
    end = to_utc(datetime.combine(TODAY + timedelta(days=1), datetime.min.time()), zone)
    return render_summary(
        local_date=TODAY,
        tz=zone,
        reminders=reminders_of_day(session, user_id=user_id, start=start, end=end, tz=zone),
        events=load_calendar_events(session, user_id=user_id, local_date=TODAY, tz=zone),
        display_name="Ada",
    ).text


def test_a_page_writes_what_one_user_at_a_time_would_once(
    db_engine: Engine, make_user: Callable[..., int], registry: Any
) -> None:
    users = [make_user(), make_user(timezone="Europe/London"), make_user()]
    skipped = [make_user(email="broken"), make_user(daily_summary_enabled=False)]
    with Session(db_engine) as session:
        for user_id in users[:2]:
            add_events(session, user_id)
            add_reminders(session, user_id)
        session.commit()
        expected = {
            u: expected_text(session, u, "Europe/London" if u == users[1] else "Europe/Paris")
            for u in users
        }
        session.rollback()
    for _ in range(2):  # a duplicated page message writes nothing more
        with Session(db_engine) as session:
            write_summary_page(
                [*users, *skipped], TODAY, session=session, now=NOW, fallback=pytest.fail
            )
            session.commit()
    with Session(db_engine) as session:
        emails = session.exec(select(OutboxEmail).order_by(col(OutboxEmail.id))).all()
        records = session.exec(select(DailySummary).order_by(col(DailySummary.user_id))).all()
    assert [e.idempotency_key for e in emails] == [f"daily-summary:{u}:2026-11-25" for u in users]
    assert [e.body_text for e in emails] == [expected[u] for u in users]
    assert "09:00-09:15  Standup" in emails[0].body_text and "Dentist" in emails[0].body_text
    assert [(r.user_id, r.email_id) for r in records] == [
        (u, e.id) for u, e in zip(users, emails, strict=True)
    ]
    assert registry.get_sample_value("bgworkers_summaries_sent_total") == 3
    skips = {"bad_address": 1, "opted_out": 1, "already_sent": 3}
    for reason, count in skips.items():
        sample = registry.get_sample_value("bgworkers_summaries_skipped_total", {"reason": reason})
        assert sample == 2 * count if reason != "already_sent" else sample == count


def test_a_user_whose_summary_raises_is_handed_on_alone(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    users = [make_user(), make_user(display_name="Poison"), make_user()]

    def render(**fields: Any) -> Any:
        if fields["display_name"] == "Poison":
            raise ValueError("cannot render this one")
        return render_summary(**fields)

    handed_on: list[int] = []
    with Session(db_engine) as session:
        written = write_summary_page(
            users, TODAY, session=session, now=NOW, fallback=handed_on.append, render=render
        )
        session.commit()
        keys = session.exec(select(OutboxEmail.idempotency_key)).all()
    assert handed_on == [users[1]] and len(written) == 2
    assert sorted(keys) == sorted(f"daily-summary:{u}:2026-11-25" for u in (users[0], users[2]))
    with Session(db_engine) as session:  # its own per-user message then writes it
        assert send_daily_summary(users[1], TODAY, session=session, now=NOW) == "sent"
        session.commit()


def test_a_user_summarised_one_at_a_time_is_skipped_by_the_page(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    users = [make_user(), make_user()]
    with Session(db_engine) as session:
        send_daily_summary(users[0], TODAY, session=session, now=NOW, dispatch_email=[].append)
        session.commit()
        written = write_summary_page(users, TODAY, session=session, now=NOW, fallback=pytest.fail)
        session.commit()
        assert len(written) == 1
        assert len(session.exec(select(OutboxEmail)).all()) == 2
