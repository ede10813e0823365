from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bgworkers.reminders.formatting import (
    SummaryItem,
    excerpt,
    local_datetime,
    relative_time,
    render_reminder,
    render_summary,
)
from bgworkers.reminders.recurrence import parse_rule

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=20), "now"),
        (timedelta(seconds=-59), "now"),
        (timedelta(minutes=1), "in 1 minute"),
        (timedelta(minutes=5, seconds=30), "in 5 minutes"),
        (timedelta(hours=2, minutes=10), "in 2 hours"),
        (timedelta(days=1, hours=3), "in 1 day"),
        (timedelta(days=15), "in 2 weeks"),
        (-timedelta(minutes=5), "5 minutes ago"),
        (-timedelta(days=400), "1 year ago"),
    ],
)
def test_relative_time(delta: timedelta, expected: str) -> None:
    assert relative_time(NOW + delta, now=NOW) == expected


def test_local_datetime_is_in_the_users_zone() -> None:
    assert local_datetime(NOW, PARIS) == "Wednesday 25 November 2026 at 10:00 (Europe/Paris)"
    summer = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    assert local_datetime(summer, PARIS) == "Wednesday 1 July 2026 at 11:00 (Europe/Paris)"


def test_excerpt() -> None:
    assert excerpt("Buy\nmilk") == "Buy milk"
    assert excerpt("x" * 100, limit=10) == "xxxxxxxxx…"


def test_render_one_off_reminder() -> None:
    email = render_reminder(
        text="Call <Bob> & Alice\nabout the trip",
        due_at=NOW + timedelta(hours=2),
        tz=PARIS,
        now=NOW,
        display_name="Ada",
    )
    assert email.subject == "Reminder: Call <Bob> & Alice about the trip"
    assert email.text.startswith("Hello Ada,\n")
    assert "Call <Bob> & Alice\nabout the trip" in email.text
    assert "Due: Wednesday 25 November 2026 at 12:00 (Europe/Paris) (in 2 hours)" in email.text
    assert "Repeats" not in email.text
    assert "Call &lt;Bob&gt; &amp; Alice<br>\nabout the trip" in email.html
    assert "<Bob>" not in email.html
    assert "(in 2 hours)" in email.html


def test_render_recurring_reminder_mentions_the_next_time() -> None:
    email = render_reminder(
        text="Stand-up",
        due_at=NOW,
        tz=PARIS,
        now=NOW,
        rule=parse_rule("weekly:mon,wed"),
        next_due_at=NOW + timedelta(days=5),
    )
    assert "(now)" in email.text
    assert (
        "Repeats every Monday and Wednesday; next time: Monday 30 November 2026 at 10:00"
        in email.text
    )
    assert "Repeats every Monday and Wednesday" in email.html


def test_render_summary() -> None:
    email = render_summary(
        local_date=date(2026, 11, 25),
        tz=PARIS,
        reminders=[SummaryItem(NOW + timedelta(hours=4), "Pay <rent>", "reminder")],
        events=[
            SummaryItem(None, "Holiday", "event"),
            SummaryItem(NOW, "Team sync", "event", NOW + timedelta(hours=1), "tentative"),
        ],
        display_name="Ada",
    )
    assert email.subject == "Your day: Wednesday 25 November"
    assert "Here is your day, Wednesday 25 November 2026 (Europe/Paris)." in email.text
    assert "  - All day  Holiday\n" in email.text
    assert "  - 10:00-11:00  Team sync (tentative)\n" in email.text
    assert "  - 14:00  Pay <rent>\n" in email.text
    assert "<li>14:00  Pay &lt;rent&gt;</li>" in email.html


def test_render_empty_summary() -> None:
    email = render_summary(local_date=date(2026, 11, 25), tz=PARIS, reminders=[], events=[])
    assert "No events today." in email.text
    assert "No reminders today." in email.text
    assert email.text.startswith("Good morning,\n")
