"""Guarantee 1, fires when cron says: the scheduler's ticks equal croniter's over a year.

Two layers, both with the configured zone different from the process's zone:

* a whole year (2026) for every schedule-table entry, in Europe/Paris and America/New_York:
  the exact list of ticks (so every minute of the year is either in both lists or in
  neither) computed by the option periodiq reads, against croniter;
* periodiq's loop itself, minute by minute, with every entry in one scheduler (it wakes every
  minute because of the heartbeat), over the days around each daylight-saving change: ``now``
  is the wake time plus 0.5 s truncated to the second in the *process's* local zone,
  ``validate(now)`` decides whether to send and ``next_valid_date(now)`` is the next wake-up,
  exactly as periodiq's ``Scheduler`` does.

The reference is croniter, started in the configured zone, with one documented difference:
croniter fires a fixed-time job twice in a repeated fall-back hour; we fire it once (the first
occurrence), as Vixie cron does. That difference is filtered out of the reference explicitly
below and asserted on its own in ``test_dst_policy``. For the two densest expressions
(``* * * * *``, ``*/5 * * * *``) croniter takes tens of seconds to list a year: there the year
is checked against its plain arithmetic (every UTC minute, every 5 UTC minutes) and croniter
is compared on the days around each daylight-saving change.
"""

from __future__ import annotations

import functools
import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pendulum
import pytest
from croniter import croniter
from periodiq import cron as periodiq_cron

from bgworkers.scheduling.cron import CronError, CronExpression, ZonedCron
from bgworkers.scheduling.periodic import CronPeriod
from bgworkers.scheduling.schedule import SCHEDULE

YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2027, 1, 1, tzinfo=UTC)
DST_ZONES = ("Europe/Paris", "America/New_York")
#: The zone the simulated scheduler process runs in (its ``pendulum.now()``).
PROCESS_ZONE = ZoneInfo("Asia/Kolkata")
MINUTE = timedelta(minutes=1)


def periodiq_loop(period: CronPeriod, start: datetime, end: datetime) -> list[datetime]:
    """The ticks periodiq's Scheduler sends for this one actor between start and end."""
    now = datetime.fromtimestamp(int(start.timestamp()), PROCESS_ZONE)
    sent: list[datetime] = []
    while now < end:
        if period.validate(now):
            sent.append(period.tick_at(now))
        wake = period.next_valid_date(now)
        assert isinstance(wake, pendulum.DateTime)
        now = datetime.fromtimestamp(int(wake.timestamp() + 0.5), PROCESS_ZONE)
    return sent


def croniter_ticks(expression: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """croniter's ticks in ``zone``, minus the second copy of a fixed-time fall-back tick."""
    by_real_time = CronExpression.parse(expression).by_real_time
    iterator = croniter(expression, start.astimezone(ZoneInfo(zone)) - MINUTE)
    ticks: list[datetime] = []
    while (tick := iterator.get_next(datetime)) < end:
        repeated = tick.fold == 1 and tick.replace(fold=0).utcoffset() != tick.utcoffset()
        if repeated and not by_real_time:
            continue
        ticks.append(tick.astimezone(UTC))
    return ticks


@functools.cache
def year_of(expression: str, zone: str) -> list[datetime]:
    job = next(entry for entry in SCHEDULE if entry.cron == expression)
    period = CronPeriod(job, timezone=zone)
    ticks = period.ticks_between(YEAR_START - MINUTE, YEAR_END)
    # The same option answers periodiq at each tick (sampled: a call costs microseconds).
    for tick in ticks[:: max(1, len(ticks) // 2000)]:
        now = datetime.fromtimestamp(tick.timestamp() + 0.4, PROCESS_ZONE)
        assert period.validate(now)
        assert period.next_valid_date(now) == period.next_tick(tick)
    return ticks


def dst_days(zone: str) -> list[tuple[datetime, datetime]]:
    """UTC windows of two days around each offset change of 2026 in ``zone``."""
    tz = ZoneInfo(zone)
    windows = []
    day = YEAR_START
    while day < YEAR_END:
        if day.astimezone(tz).utcoffset() != (day + timedelta(days=1)).astimezone(tz).utcoffset():
            windows.append((day - timedelta(days=1), day + timedelta(days=2)))
        day += timedelta(days=1)
    assert len(windows) == 2
    return windows


@pytest.mark.parametrize("zone", DST_ZONES)
@pytest.mark.parametrize("entry", SCHEDULE, ids=lambda e: e.actor_name)
def test_a_year_of_ticks_equals_croniter(entry, zone: str) -> None:
    ours = year_of(entry.cron, zone)
    step = {"* * * * *": 1, "*/5 * * * *": 5}.get(entry.cron)
    if step is None:
        assert ours == croniter_ticks(entry.cron, zone, YEAR_START, YEAR_END)
        return
    assert ours == [YEAR_START + i * step * MINUTE for i in range(365 * 24 * 60 // step)]
    for start, end in dst_days(zone):
        assert [t for t in ours if start <= t < end] == croniter_ticks(entry.cron, zone, start, end)


@pytest.mark.parametrize("zone", DST_ZONES)
def test_whole_table_minute_by_minute_around_dst(zone: str) -> None:
    """All entries in one scheduler, which wakes every minute (heartbeat): validate is False
    at every minute that is not a tick, whatever the other entries do."""
    periods = [CronPeriod(entry, timezone=zone) for entry in SCHEDULE]
    for start, end in dst_days(zone):
        sent: dict[str, list[datetime]] = {p.name: [] for p in periods}
        now = datetime.fromtimestamp(int(start.timestamp()), PROCESS_ZONE)
        wakes = 0
        while now < end:
            wakes += 1
            for period in periods:
                if period.validate(now):
                    sent[period.name].append(period.tick_at(now))
            wake = min(p.next_valid_date(now) for p in periods)
            now = datetime.fromtimestamp(int(wake.timestamp() + 0.5), PROCESS_ZONE)
        assert wakes == (end - start) // MINUTE
        for period in periods:
            assert sent[period.name] == croniter_ticks(period.cron, zone, start, end)


@pytest.mark.parametrize("zone", DST_ZONES)
@pytest.mark.parametrize(
    "expression",
    ["17 * * * *", "5,35 * * * *", "17 0-23 * * *", "*/20 2 * * *", "17 */2 * * *", "45 1-3 * * *"],
)
def test_lines_outside_the_table_equal_croniter_around_dst(expression: str, zone: str) -> None:
    """An operator's override may be any line: every-hour jobs at a fixed minute drop the
    skipped tick of a spring-forward change (as croniter does), others run it after the gap."""
    zoned = ZonedCron(CronExpression.parse(expression), ZoneInfo(zone))
    for start, end in dst_days(zone):
        assert zoned.ticks_between(start - MINUTE, end) == croniter_ticks(
            expression, zone, start, end
        )


def test_dst_policy() -> None:
    paris = ZoneInfo("Europe/Paris")

    def ticks(expression: str, day: str) -> list[str]:
        zoned = ZonedCron(CronExpression.parse(expression), paris)
        start = datetime.fromisoformat(day).replace(tzinfo=paris)
        found = zoned.ticks_between(start - MINUTE, start + timedelta(days=1))
        return [t.astimezone(paris).strftime("%H:%M%z") for t in found]

    # Spring forward (02:00 -> 03:00): the skipped 02:30 runs once, at 03:00...
    assert ticks("30 2 * * *", "2026-03-29") == ["03:00+0200"]
    # ...but a job of every hour keeps its hourly rhythm: no run at 03:00 besides 03:17.
    assert ticks("17 * * * *", "2026-03-29")[:3] == ["00:17+0100", "01:17+0100", "03:17+0200"]
    # Fall back (03:00 -> 02:00): a fixed-time 02:30 runs once, the first time...
    assert ticks("30 2 * * *", "2026-10-25") == ["02:30+0200"]
    # ...but an every-15-minutes job keeps running by real time, through both copies.
    assert ticks("*/15 2 * * *", "2026-10-25") == [
        f"02:{m:02d}{off}" for off in ("+0200", "+0100") for m in (0, 15, 30, 45)
    ]
    # croniter would have fired the fixed-time job twice: that is the difference we filter.
    iterator = croniter("30 2 * * *", datetime(2026, 10, 25, tzinfo=paris))
    assert [iterator.get_next(datetime).strftime("%H:%M%z") for _ in range(2)] == [
        "02:30+0200",
        "02:30+0100",
    ]


def test_result_does_not_depend_on_the_process_zone() -> None:
    period = CronPeriod(SCHEDULE[5], timezone="America/New_York")  # backup, Sunday 01:00
    instant = datetime(2026, 11, 1, 5, 0, tzinfo=UTC)  # 01:00 EDT, first copy
    answers = set()
    for local in ("UTC", "Asia/Kolkata", "America/New_York", "Pacific/Kiritimati", "Europe/Paris"):
        now = pendulum.instance(instant).in_tz(local)
        answers.add((period.validate(now), period.next_valid_date(now).timestamp()))
    assert answers == {(True, datetime(2026, 11, 8, 6, 0, tzinfo=UTC).timestamp())}


def test_sunday_written_0_7_sun_or_weekly_fires_unlike_periodiq() -> None:
    sunday = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)
    for expression in ("0 1 * * 0", "0 1 * * 7", "0 1 * * sun", "0 1 * * 5-7"):
        assert ZonedCron(CronExpression.parse(expression), ZoneInfo("UTC")).is_tick(sunday)
    weekly = ZonedCron(CronExpression.parse("@weekly"), ZoneInfo("UTC"))
    assert weekly.next_after(sunday) == datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
    # periodiq's own matcher never validates a Sunday written 0: the fault we replace.
    assert not periodiq_cron("0 1 * * 0").validate(pendulum.instance(sunday))


@pytest.mark.parametrize(
    "expression", ["* * * *", "61 * * * *", "* * 0 * *", "5-1 * * * *", "*/0 * * * *", "x * * * *"]
)
def test_bad_expressions_are_refused_with_the_reason(expression: str) -> None:
    with pytest.raises(
        CronError, match=r"expected 5 fields|out of range|backwards|step|not acceptable"
    ):
        CronExpression.parse(expression)


def test_disabled_period_never_fires_and_sleeps_far() -> None:
    period = CronPeriod(SCHEDULE[0], override="off")
    now = pendulum.datetime(2026, 1, 1, 0, 0)
    assert not period.validate(now)
    assert period.next_valid_date(now) > now + timedelta(days=300)
    assert str(period) == "off (* * * * *)"
    overridden = CronPeriod(SCHEDULE[0], override="0 9 * * 1", timezone="Europe/Paris")
    assert overridden.next_tick(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(
        2026, 1, 5, 8, 0, tzinfo=UTC
    )


def test_clock_offset_moves_the_scheduler_in_whole_seconds() -> None:
    period = CronPeriod(SCHEDULE[0], clock_offset_s=3600.4)
    real = pendulum.datetime(2026, 1, 1, 10, 0, 30)
    assert period.tick_at(real) == datetime(2026, 1, 1, 11, 0, tzinfo=UTC)
    assert period.next_valid_date(real) == pendulum.datetime(2026, 1, 1, 10, 1, 0)


class _ClearedOnWrite(dict):  # type: ignore[type-arg]
    """A day cache that another thread clears right after every write."""

    def __setitem__(self, key: object, value: object) -> None:
        super().__setitem__(key, value)
        self.clear()


def test_day_cache_cleared_by_another_thread_still_answers() -> None:
    zoned = ZonedCron(CronExpression.parse("0 2 * * *"), ZoneInfo("Europe/Paris"))
    zoned._days = _ClearedOnWrite()
    start = datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert zoned.ticks_between(start, start + timedelta(days=1)) == [
        datetime(2026, 11, 25, 1, tzinfo=UTC)
    ]


@pytest.mark.parametrize(
    ("expression", "zone"),
    [
        ("* * * * *", "UTC"),
        ("*/7 3-5 * * *", "Europe/Paris"),
        ("30 2 * * *", "Europe/Paris"),  # a tick that spring-forward skips
        ("0 9 * * 1-5", "America/New_York"),
        ("15 4 1 * *", "UTC"),
        ("0 0 31 2 *", "UTC"),  # never: no gap
    ],
)
def test_longest_gap_is_the_longest_gap_of_the_tick_list(expression: str, zone: str) -> None:
    """The streaming walk agrees with the list it replaced, on cold and warm day caches."""
    start = datetime(2026, 2, 20, 13, 7, tzinfo=UTC)  # across a spring-forward and a month end
    end = start + timedelta(weeks=8)
    zoned = ZonedCron(CronExpression.parse(expression), ZoneInfo(zone))
    cold = zoned.longest_gap_between(start, end)
    ticks = zoned.ticks_between(start, end)  # fills the day cache
    expected = max((b - a for a, b in itertools.pairwise(ticks)), default=None)
    assert cold == expected
    assert zoned.longest_gap_between(start, end) == expected
