from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bgworkers.reminders.recurrence import (
    RecurrenceError,
    Rule,
    describe,
    first_occurrence,
    next_occurrence,
    occurrences_between,
    parse_rule,
    shortest_gap,
    to_utc,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def series(rule: str, first_local: datetime, tz: ZoneInfo, count: int) -> list[datetime]:
    """The first ``count`` occurrences after the first one, as local wall times."""
    first = to_utc(first_local, tz)
    found, cursor = [], first
    for _ in range(count):
        cursor = next_occurrence(parse_rule(rule), first=first, tz=tz, after=cursor)
        found.append(cursor.astimezone(tz).replace(tzinfo=None))
    return found


def test_daily_keeps_local_time_across_spring_forward() -> None:
    first = to_utc(datetime(2026, 3, 27, 9, 0), PARIS)
    rule = parse_rule("daily")
    utc_times = []
    cursor = first
    for _ in range(3):
        cursor = next_occurrence(rule, first=first, tz=PARIS, after=cursor)
        utc_times.append(cursor)
    assert [t.astimezone(PARIS).hour for t in utc_times] == [9, 9, 9]
    # 28 March is still winter time (UTC+1); from 29 March summer time (UTC+2).
    assert [t.hour for t in utc_times] == [8, 7, 7]


def test_daily_in_the_skipped_hour_moves_forward_by_the_gap() -> None:
    got = series("daily", datetime(2026, 3, 27, 2, 30), PARIS, 3)
    assert got == [
        datetime(2026, 3, 28, 2, 30),
        datetime(2026, 3, 29, 3, 30),  # 02:30 does not exist that night
        datetime(2026, 3, 30, 2, 30),
    ]


def test_daily_in_the_repeated_hour_fires_once() -> None:
    first = to_utc(datetime(2026, 10, 24, 2, 30), PARIS)
    rule = parse_rule("daily")
    ambiguous_day = next_occurrence(rule, first=first, tz=PARIS, after=first)
    following = next_occurrence(rule, first=first, tz=PARIS, after=ambiguous_day)
    # First instance of 02:30 (still UTC+2), then straight to the next day.
    assert ambiguous_day == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert following == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
    assert following - ambiguous_day == timedelta(hours=25)


def test_new_york_fall_back_keeps_nine_o_clock() -> None:
    got = series("daily", datetime(2026, 10, 31, 9, 0), NEW_YORK, 3)
    assert [d.hour for d in got] == [9, 9, 9]
    first = to_utc(datetime(2026, 10, 31, 9, 0), NEW_YORK)
    # One day after the first occurrence (UTC) is 08:00 EST on 1 November, the day the
    # clocks fell back: 09:00 local comes an hour later, at 14:00 UTC.
    nov1 = next_occurrence(
        parse_rule("daily"), first=first, tz=NEW_YORK, after=first + timedelta(days=1)
    )
    assert nov1 == datetime(2026, 11, 1, 14, 0, tzinfo=UTC)
    assert first == datetime(2026, 10, 31, 13, 0, tzinfo=UTC)  # EDT, UTC-4


def test_monthly_on_the_31st_clamps_and_comes_back() -> None:
    got = series("monthly", datetime(2027, 1, 31, 8, 0), PARIS, 4)
    assert [d.date().isoformat() for d in got] == [
        "2027-02-28",
        "2027-03-31",
        "2027-04-30",
        "2027-05-31",
    ]
    assert all(d.hour == 8 for d in got)


def test_monthly_on_the_31st_uses_feb_29_in_a_leap_year() -> None:
    got = series("monthly", datetime(2028, 1, 31, 8, 0), PARIS, 2)
    assert [d.date().isoformat() for d in got] == ["2028-02-29", "2028-03-31"]


def test_monthly_on_the_30th_in_february() -> None:
    got = series("monthly", datetime(2027, 1, 30, 8, 0), PARIS, 2)
    assert [d.date().isoformat() for d in got] == ["2027-02-28", "2027-03-30"]


def test_yearly_on_feb_29() -> None:
    got = series("yearly", datetime(2028, 2, 29, 12, 0), PARIS, 4)
    assert [d.date().isoformat() for d in got] == [
        "2029-02-28",
        "2030-02-28",
        "2031-02-28",
        "2032-02-29",
    ]


def test_daily_through_feb_29() -> None:
    got = series("daily", datetime(2028, 2, 27, 7, 15), PARIS, 3)
    assert [d.date().isoformat() for d in got] == ["2028-02-28", "2028-02-29", "2028-03-01"]


def test_weekly_on_chosen_weekdays() -> None:
    # 2 Nov 2026 is a Monday.
    got = series("weekly:mon,thu", datetime(2026, 11, 2, 18, 0), PARIS, 4)
    assert [d.strftime("%a %d") for d in got] == ["Thu 05", "Mon 09", "Thu 12", "Mon 16"]


def test_weekly_without_days_uses_the_first_weekday() -> None:
    got = series("weekly", datetime(2026, 11, 4, 18, 0), PARIS, 2)
    assert [d.date().isoformat() for d in got] == ["2026-11-11", "2026-11-18"]


def test_cron_on_local_time_across_dst() -> None:
    got = series("cron:0 9 * * 1-5", datetime(2026, 3, 27, 9, 0), PARIS, 3)
    # Friday 27 -> Monday 30 (summer time) -> Tuesday 31, always 09:00 local.
    assert got == [
        datetime(2026, 3, 30, 9, 0),
        datetime(2026, 3, 31, 9, 0),
        datetime(2026, 4, 1, 9, 0),
    ]


def test_cron_in_the_skipped_hour_fires_shifted_and_once_in_the_repeated_hour() -> None:
    spring = series("cron:30 2 * * *", datetime(2026, 3, 28, 2, 30), PARIS, 2)
    assert spring == [datetime(2026, 3, 29, 3, 30), datetime(2026, 3, 30, 2, 30)]
    autumn = series("cron:30 2 * * *", datetime(2026, 10, 24, 2, 30), PARIS, 2)
    assert autumn == [datetime(2026, 10, 25, 2, 30), datetime(2026, 10, 26, 2, 30)]


def test_cron_on_the_31st_skips_short_months() -> None:
    got = series("cron:0 10 31 * *", datetime(2027, 1, 31, 10, 0), PARIS, 2)
    assert [d.date().isoformat() for d in got] == ["2027-03-31", "2027-05-31"]


@pytest.mark.parametrize("expression", ["0 9 31 2 *", "0 9 30 2 *"])
def test_cron_that_never_fires_is_a_readable_error(expression: str) -> None:
    rule = parse_rule(f"cron:{expression}")  # each field is valid on its own
    first = to_utc(datetime(2026, 12, 1, 9, 0), PARIS)
    with pytest.raises(RecurrenceError, match="never fires"):
        next_occurrence(rule, first=first, tz=PARIS, after=first)
    with pytest.raises(RecurrenceError, match="never fires"):
        shortest_gap(rule, first=first, tz=PARIS)


def test_first_occurrence_is_the_first_rule_match_at_or_after_due_at() -> None:
    tuesday = to_utc(datetime(2026, 11, 3, 9, 0), PARIS)  # 3 Nov 2026 is a Tuesday
    monday = to_utc(datetime(2026, 11, 9, 9, 0), PARIS)
    assert first_occurrence(parse_rule("weekly:mon"), due_at=tuesday, tz=PARIS) == monday
    assert first_occurrence(parse_rule("cron:0 9 * * 1"), due_at=tuesday, tz=PARIS) == monday
    at_8_59 = to_utc(datetime(2026, 11, 3, 8, 59), PARIS)
    assert first_occurrence(parse_rule("cron:0 9 * * *"), due_at=at_8_59, tz=PARIS) == tuesday
    # On the schedule already, or anchored on due_at: unchanged.
    assert first_occurrence(parse_rule("weekly:tue"), due_at=tuesday, tz=PARIS) == tuesday
    for rule in ("daily", "weekly", "monthly", "yearly"):
        assert first_occurrence(parse_rule(rule), due_at=at_8_59, tz=PARIS) == at_8_59


def test_shortest_gap_measures_between_rule_occurrences_only() -> None:
    at_8_59 = to_utc(datetime(2026, 11, 3, 8, 59), PARIS)
    assert shortest_gap(parse_rule("cron:0 9 * * *"), first=at_8_59, tz=PARIS) == timedelta(days=1)


def test_missed_occurrences_are_not_replayed() -> None:
    first = to_utc(datetime(2026, 11, 1, 9, 0), PARIS)
    after_outage = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
    nxt = next_occurrence(parse_rule("daily"), first=first, tz=PARIS, after=after_outage)
    assert nxt == to_utc(datetime(2026, 11, 6, 9, 0), PARIS)


def test_never_before_the_first_occurrence() -> None:
    first = to_utc(datetime(2026, 11, 10, 9, 0), PARIS)
    early = first - timedelta(days=5)
    assert next_occurrence(parse_rule("daily"), first=first, tz=PARIS, after=early) == first


def test_occurrences_between() -> None:
    first = to_utc(datetime(2026, 11, 2, 9, 0), PARIS)
    start = to_utc(datetime(2026, 11, 4, 0, 0), PARIS)
    got = occurrences_between(
        parse_rule("cron:0 9,13,17 * * *"),
        first=first,
        tz=PARIS,
        start=start,
        end=start + timedelta(days=1),
        limit=10,
    )
    assert [t.astimezone(PARIS).hour for t in got] == [9, 13, 17]
    assert occurrences_between(None, first=first, tz=PARIS, start=start, end=start, limit=5) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("daily", Rule("daily")),
        (" Weekly: Monday, fri ", Rule("weekly", weekdays=(0, 4))),
        ("monthly", Rule("monthly")),
        ("yearly", Rule("yearly")),
        ("cron:0  9 * * 1-5", Rule("cron", cron="0 9 * * 1-5")),
    ],
)
def test_parse_rule(text: str, expected: Rule) -> None:
    assert parse_rule(text) == expected
    assert parse_rule(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fortnightly", "not understood"),
        ("weekly:funday", "'funday' is not a weekday"),
        ("cron:61 * * * *", "not valid"),
        ("cron:0 9 * *", "five fields"),
        ("daily:3", "not understood"),
    ],
)
def test_parse_rule_rejects_with_a_readable_message(text: str, message: str) -> None:
    with pytest.raises(RecurrenceError, match=message):
        parse_rule(text)


def test_describe() -> None:
    assert describe(None) == "once"
    assert describe(parse_rule("weekly:mon,wed,fri")) == "every Monday, Wednesday and Friday"
    assert describe(parse_rule("daily")) == "every day"
