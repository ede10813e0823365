"""A cron matcher evaluated in a given IANA time zone, with an explicit daylight-saving policy.

Why not periodiq's ``CronSpec``: it never fires a day-of-week written ``0``/``sun``/``@weekly``,
skips Sundays in ranges, and matches in the process's local zone, so a fall-back hour fires twice
and a spring-forward hour is lost. Ticks here are computed from the configured zone only; the
machine's zone plays no part.

Semantics (the same as croniter's, and Vixie cron's for the daylight-saving policy):

* five fields, ``minute hour day-of-month month day-of-week``; ``*``, ``a``, ``a-b``, ``*/n``,
  ``a-b/n``, ``a/n``, lists; month and weekday names (``jan``, ``sun``); Sunday is ``0`` or
  ``7``; the aliases ``@hourly @daily @midnight @weekly @monthly @yearly @annually``;
* when both day fields are restricted (neither is ``*``), a day matches if either does;
* a wall-clock time skipped by a spring-forward change fires once, at the first instant after
  the gap (02:30 on the change day in Paris runs at 03:00 summer time), unless the job runs
  every hour (``17 * * * *``): its next tick comes within the hour, so the skipped one is dropped;
* a wall-clock time repeated by a fall-back change fires once, at its first occurrence, unless
  the minute or hour field starts with ``*`` (``*/5 * * * *``, ``0 * * * *``): such a job runs
  by real time, in both copies of the repeated hour, so an every-5-minutes job never pauses.

Ticks are minute-aligned UTC datetimes.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MINUTE = timedelta(minutes=1)
#: How far :meth:`ZonedCron.next_after` looks ahead, in days (covers ``0 0 29 2 *`` over a
#: century's gap between leap years that fall on no particular weekday).
_HORIZON_DAYS = 8 * 366


class CronError(ValueError):
    """A cron expression that cannot be parsed; the message says which field and why."""


def _parse_field(text: str, low: int, high: int, names: tuple[str, ...] = ()) -> frozenset[int]:
    values: set[int] = set()
    for part in text.lower().split(","):
        spec, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"bad step {step_text!r} in {text!r}")
            step = int(step_text)
        if spec == "*":
            start, end = low, high
        else:
            first, dash, last = spec.partition("-")
            start = _value(first, low, high, names)
            end = _value(last, low, high, names) if dash else (high if step_text else start)
            if end < start:
                raise CronError(f"range {spec!r} runs backwards in {text!r}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(token: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if token in names:
        return names.index(token) + low
    if not token.isdigit():
        raise CronError(f"{token!r} is not a number or a known name")
    number = int(token)
    if not low <= number <= high:
        raise CronError(f"{number} is outside {low}-{high}")
    return number


@dataclass(frozen=True)
class CronExpression:
    """A parsed five-field cron expression (see the module docstring for the semantics)."""

    source: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_or: bool  # both day fields restricted: either one matching is enough
    by_real_time: bool  # minute or hour field starts with "*": see the fall-back rule

    @classmethod
    def parse(cls, source: str) -> CronExpression:
        text = source.strip()
        fields = ALIASES.get(text.lower(), text).split()
        if len(fields) != 5:
            raise CronError(f"{source!r}: expected 5 fields, got {len(fields)}")
        minute, hour, dom, month, dow = fields
        try:
            weekdays = frozenset(d % 7 for d in _parse_field(dow, 0, 7, _WEEKDAYS))
            return cls(
                source=source,
                minutes=tuple(sorted(_parse_field(minute, 0, 59))),
                hours=tuple(sorted(_parse_field(hour, 0, 23))),
                days=_parse_field(dom, 1, 31),
                months=_parse_field(month, 1, 12, _MONTHS),
                weekdays=weekdays,
                day_or=dom != "*" and dow != "*",
                by_real_time=minute.startswith("*") or hour.startswith("*"),
            )
        except CronError as exc:
            raise CronError(f"{source!r}: {exc}") from None

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom_ok = day.day in self.days
        dow_ok = day.isoweekday() % 7 in self.weekdays
        return (dom_ok or dow_ok) if self.day_or else (dom_ok and dow_ok)


class ZonedCron:
    """The ticks of a cron expression in one time zone, as UTC instants.

    Ticks are computed a local day at a time and cached per UTC day, so checking a minute is
    a set lookup: periodiq asks every actor at every wake-up (each minute here).
    """

    def __init__(self, expression: CronExpression, zone: ZoneInfo) -> None:
        self.expression = expression
        self.zone = zone
        self._days: dict[date, tuple[tuple[datetime, ...], frozenset[datetime]]] = {}

    def is_tick(self, instant: datetime) -> bool:
        """Whether the minute-aligned UTC ``instant`` is a tick."""
        return instant in self._utc_day(instant.astimezone(UTC).date())[1]

    def next_after(self, instant: datetime) -> datetime | None:
        """The first tick strictly after ``instant``; None if there is none for years."""
        instant = instant.astimezone(UTC)
        day = instant.date()
        for _ in range(_HORIZON_DAYS):
            ticks = self._utc_day(day)[0]
            index = bisect.bisect_right(ticks, instant)
            if index < len(ticks):
                return ticks[index]
            day += timedelta(days=1)
        return None

    def ticks_between(self, start: datetime, end: datetime) -> list[datetime]:
        """Every tick ``t`` with ``start < t < end`` (both excluded), in order."""
        return list(self._walk_ticks(start, end, cache_days=True))

    def longest_gap_between(self, start: datetime, end: datetime) -> timedelta | None:
        """The longest time between two consecutive ticks in ``(start, end)``; None with
        fewer than two.

        Walks the ticks day by day without keeping them: over weeks, a job that runs every
        minute has tens of thousands, and the day cache (or a list of them all) held about
        14 MiB in every worker group's metrics process, which computes this at start-up.
        """
        ticks = self._walk_ticks(start, end, cache_days=False)
        return max((b - a for a, b in itertools.pairwise(ticks)), default=None)

    def _walk_ticks(
        self, start: datetime, end: datetime, *, cache_days: bool
    ) -> Iterator[datetime]:
        """The ticks strictly between ``start`` and ``end``, a UTC day at a time; days found
        in the cache are reused, and new ones kept in it only with ``cache_days``."""
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        day = start.date()
        while day <= end.date():
            if cache_days:
                ticks = self._utc_day(day)[0]
            else:
                cached = self._days.get(day)
                ticks = cached[0] if cached is not None else self._ticks_of_utc_day(day)
            yield from ticks[bisect.bisect_right(ticks, start) : bisect.bisect_left(ticks, end)]
            day += timedelta(days=1)

    def _ticks_of_utc_day(self, day: date) -> tuple[datetime, ...]:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        return tuple(
            sorted(
                t
                for local in (day - timedelta(days=1), day, day + timedelta(days=1))
                for t in self.ticks_on_local_date(local)
                if start <= t < end
            )
        )

    def _utc_day(self, day: date) -> tuple[tuple[datetime, ...], frozenset[datetime]]:
        cached = self._days.get(day)
        if cached is not None:
            return cached
        ticks = self._ticks_of_utc_day(day)
        if len(self._days) > 64:
            self._days.clear()
        found = (ticks, frozenset(ticks))
        self._days[day] = found  # another thread may clear the cache at once: return ours
        return found

    def ticks_on_local_date(self, day: date) -> list[datetime]:
        """The ticks whose wall-clock time falls on the local date ``day``, as UTC instants."""
        cron = self.expression
        if not cron.matches_day(day):
            return []
        midnight = datetime(day.year, day.month, day.day).replace(tzinfo=self.zone)
        first = midnight.astimezone(UTC)
        last = (midnight + timedelta(minutes=1439)).astimezone(UTC)
        if first.astimezone(self.zone).utcoffset() == last.astimezone(self.zone).utcoffset() and (
            last - first == timedelta(minutes=1439)
        ):
            # No offset change today: wall time maps to UTC by one fixed offset.
            return [first + timedelta(hours=h, minutes=m) for h in cron.hours for m in cron.minutes]
        found: set[datetime] = set()
        for hour in cron.hours:
            for minute in cron.minutes:
                found.update(
                    self._instants_of(datetime(day.year, day.month, day.day, hour, minute))
                )
        return sorted(found)

    def _instants_of(self, wall: datetime) -> list[datetime]:
        """The instants a matching naive wall-clock time fires at, by the DST policy."""
        earlier = wall.replace(tzinfo=self.zone).astimezone(UTC)
        if earlier.astimezone(self.zone).replace(tzinfo=None) != wall:
            # Skipped by a spring-forward change. A job of every hour fires in the next real
            # hour anyway: moving the skipped tick would fire it twice within the hour.
            if len(self.expression.hours) == 24:
                return []
            return [self._end_of_gap(earlier)]
        later = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        if later != earlier and self.expression.by_real_time:
            return [earlier, later]
        return [earlier]

    def _end_of_gap(self, inside: datetime) -> datetime:
        """The first instant after the gap that ``inside`` (an instant just past it) follows."""
        offset = inside.astimezone(self.zone).utcoffset()
        instant = inside
        while (instant - _MINUTE).astimezone(self.zone).utcoffset() == offset:
            instant -= _MINUTE
        return instant


def floor_minute(instant: datetime) -> datetime:
    """``instant`` in UTC, truncated to its minute."""
    return instant.astimezone(UTC).replace(second=0, microsecond=0)
