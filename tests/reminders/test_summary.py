from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers import queues
from bgworkers.email.models import OutboxEmail
from bgworkers.reminders.actors import (
    check_due_reminders,
    fire_reminder,
    send_daily_email_summary,
    send_user_daily_summary,
)
from bgworkers.reminders.api import cancel_reminder, create_reminder
from bgworkers.reminders.models import DailySummary
from bgworkers.reminders.summary import (
    dispatch_daily_summaries,
    due_dates_by_zone,
    load_calendar_events,
    send_daily_summary,
    user_zone,
)

# 07:15 UTC on a winter day: 08:15 in Paris, 02:15 in New York, 16:15 in Tokyo.
NOW = datetime(2026, 11, 25, 7, 15, tzinfo=UTC)
TODAY = date(2026, 11, 25)


def test_due_zones_are_grouped_by_local_date() -> None:
    zones = ["Europe/Paris", "America/New_York", "Asia/Kolkata", "Pacific/Kiritimati", "Bad/Zone"]
    # Kolkata is UTC+5:30 (12:45, past the catch-up window); Kiritimati UTC+14 (21:15).
    assert due_dates_by_zone(zones, now=NOW) == {TODAY: ["Europe/Paris"]}
    at_7 = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
    assert due_dates_by_zone(["Europe/Paris"], now=at_7 - timedelta(minutes=1)) == {}
    assert due_dates_by_zone(["Europe/Paris"], now=at_7) == {TODAY: ["Europe/Paris"]}
    assert due_dates_by_zone(["Europe/Paris"], now=at_7 + timedelta(hours=4)) == {}
    assert due_dates_by_zone(["Bad/Zone"], now=datetime(2026, 11, 25, 8, 0, tzinfo=UTC)) == {
        TODAY: ["Bad/Zone"]  # unknown zones count as UTC
    }
    # Kiritimati's morning is the previous UTC evening, on the next local date.
    evening = datetime(2026, 11, 24, 18, 30, tzinfo=UTC)
    assert due_dates_by_zone(["Pacific/Kiritimati"], now=evening) == {TODAY: ["Pacific/Kiritimati"]}
    assert str(user_zone("Nowhere/Atall")) == "UTC"


def test_a_zone_name_that_is_a_folder_counts_as_utc_and_stops_no_one() -> None:
    """A folder of the zone database ("Europe"), where ``ZoneInfo`` raises OSError."""
    at_8 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    assert str(user_zone("Europe")) == "UTC"
    assert due_dates_by_zone(["Europe", "Europe/London"], now=at_8) == {
        TODAY: ["Europe", "Europe/London"]
    }


def test_dispatch_picks_due_users_once_per_day(
    db_engine: Engine, make_user: Callable[..., int]
) -> None:
    paris = [make_user() for _ in range(5)]
    make_user(timezone="America/New_York")
    make_user(daily_summary_enabled=False)
    pages: list[list[tuple[int, str]]] = []
    with Session(db_engine) as session:
        total = dispatch_daily_summaries(
            session=session, now=NOW, dispatch=pages.append, page_size=2
        )
    assert total == 5
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [user for page in pages for user, _ in page] == paris
    assert {day for page in pages for _, day in page} == {"2026-11-25"}
    sent: list[int] = []
    with Session(db_engine) as session:
        assert (
            send_daily_summary(
                paris[0], TODAY, session=session, now=NOW, dispatch_email=sent.append
            )
            == "sent"
        )
        session.commit()
    pages.clear()
    with Session(db_engine) as session:
        dispatch_daily_summaries(
            session=session, now=NOW + timedelta(minutes=15), dispatch=pages.append
        )
    assert [user for page in pages for user, _ in page] == paris[1:]


def test_summary_sent_once_with_the_days_reminders(
    db_engine: Engine, make_user: Callable[..., int], registry
) -> None:
    user_id = make_user()
    with Session(db_engine) as session:
        for text, local, rule in (
            ("Dentist", datetime(2026, 11, 25, 15, 30), None),
            ("Tomorrow's thing", datetime(2026, 11, 26, 9, 0), None),
            ("Stretch", datetime(2026, 11, 24, 11, 0), "cron:0 11,17 * * *"),
            ("Cancelled one", datetime(2026, 11, 25, 12, 0), None),
        ):
            row = create_reminder(
                session=session,
                user_id=user_id,
                text=text,
                due_at=local,
                recurrence=rule,
                now=datetime(2026, 11, 20, tzinfo=UTC),
            )
            if text == "Cancelled one":
                cancel_reminder(session=session, reminder_id=row.id or 0)
            if text == "Stretch":  # it fired yesterday at 11:00 and 17:00
                row.next_due_at = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
        session.commit()
    sent: list[int] = []
    for _ in range(2):  # a duplicated message
        with Session(db_engine) as session:
            send_daily_summary(user_id, TODAY, session=session, now=NOW, dispatch_email=sent.append)
            session.commit()
    with Session(db_engine) as session:
        [email] = session.exec(select(OutboxEmail)).all()
        [record] = session.exec(select(DailySummary)).all()
    assert sent == [email.id]
    assert record.email_id == email.id and record.local_date == TODAY
    assert email.idempotency_key == f"daily-summary:{user_id}:2026-11-25"
    assert email.subject == "Your day: Wednesday 25 November"
    assert email.body_text.index("11:00  Stretch") < email.body_text.index("15:30  Dentist")
    assert "17:00  Stretch" in email.body_text
    assert "Tomorrow" not in email.body_text and "Cancelled" not in email.body_text
    assert "<li>15:30  Dentist</li>" in (email.body_html or "")
    assert registry.get_sample_value("bgworkers_summaries_sent_total") == 1
    assert (
        registry.get_sample_value("bgworkers_summaries_skipped_total", {"reason": "already_sent"})
        == 1
    )


@pytest.mark.parametrize(
    ("fields", "day", "reason"),
    [
        ({"daily_summary_enabled": False}, TODAY, "opted_out"),
        ({}, TODAY - timedelta(days=1), "stale"),
        ({"email": "broken"}, TODAY, "bad_address"),
    ],
)
def test_summary_skips(
    db_engine: Engine, make_user: Callable[..., int], registry, fields: dict, day: date, reason: str
) -> None:
    user_id = make_user(**fields)
    sent: list[int] = []
    with Session(db_engine) as session:
        outcome = send_daily_summary(
            user_id, day, session=session, now=NOW, dispatch_email=sent.append
        )
        session.commit()
        assert session.exec(select(OutboxEmail)).all() == []
    assert outcome == "skipped" and sent == []
    assert registry.get_sample_value("bgworkers_summaries_skipped_total", {"reason": reason}) == 1


def test_empty_day_still_gets_a_summary(db_engine: Engine, make_user: Callable[..., int]) -> None:
    user_id = make_user()
    with Session(db_engine) as session:
        assert (
            send_daily_summary(user_id, TODAY, session=session, now=NOW, dispatch_email=[].append)
            == "sent"
        )
        session.commit()
        email = session.exec(select(OutboxEmail)).one()
    assert "No events today." in email.body_text
    assert "No reminders today." in email.body_text


def test_summary_lists_calendar_events(db_engine: Engine, make_user: Callable[..., int]) -> None:
    models = pytest.importorskip("bgworkers.sync.models")  # the sync domain's table
    event = models.CalendarEvent
    user_id = make_user()
    other = make_user()
    paris_day_start = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
    with Session(db_engine) as session:
        rows = [
            (
                "Standup",
                paris_day_start + timedelta(hours=9),
                timedelta(minutes=15),
                False,
                user_id,
            ),
            ("Late party", paris_day_start + timedelta(hours=23, minutes=30), None, False, user_id),
            ("Yesterday", paris_day_start - timedelta(hours=2), timedelta(hours=1), False, user_id),
            ("Conference", datetime(2026, 11, 24, tzinfo=UTC), timedelta(days=3), True, user_id),
            ("Not mine", paris_day_start + timedelta(hours=10), None, False, other),
        ]
        for n, (title, starts, length, all_day, owner) in enumerate(rows):
            session.add(
                event(
                    user_id=owner,
                    calendar_id="primary",
                    external_id=f"e{n}",
                    title=title,
                    starts_at=starts,
                    ends_at=starts + length if length else None,
                    all_day=all_day,
                    status="tentative" if title == "Late party" else "confirmed",
                )
            )
        session.commit()
        items = load_calendar_events(
            session, user_id=user_id, local_date=TODAY, tz=user_zone("Europe/Paris")
        )
        assert [(i.title, i.note) for i in items] == [
            ("Conference", ""),
            ("Standup", ""),
            ("Late party", "tentative"),
        ]
        send_daily_summary(user_id, TODAY, session=session, now=NOW, dispatch_email=[].append)
        session.commit()
        text = session.exec(select(OutboxEmail)).one().body_text
    assert "  - All day  Conference\n" in text
    assert "  - 09:00-09:15  Standup\n" in text
    assert "  - 23:30  Late party (tentative)\n" in text


def test_summaries_do_not_share_the_reminders_queue() -> None:
    """An 08:00 burst of summaries must not delay due reminders."""
    assert fire_reminder.queue_name == check_due_reminders.queue_name == queues.REMINDERS
    assert send_user_daily_summary.queue_name == queues.EMAIL
    assert send_daily_email_summary.queue_name == queues.EMAIL
