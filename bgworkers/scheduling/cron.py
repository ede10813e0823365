"""Cron ticks in a given IANA time zone, from croniter, with an explicit daylight-saving policy.

Why not periodiq's ``CronSpec``: it never fires a day-of-week written ``0``/``sun``/``@weekly``,
skips Sundays in ranges, and matches in the process's local zone, so a fall-back hour fires twice
and a spring-forward hour is lost. Ticks here come from croniter started in the configured zone;
the machine's zone plays no part.

The semantics are croniter's for five fields and its aliases (docs/scheduling.md, guarantee 1,
states them, daylight-saving changes included), with two differences: a range that runs
backwards (``5-1``) is refused, where croniter would wrap it around; and a fixed-time tick of a
fall-back change's repeated hour fires once, where croniter fires it in both copies (jobs whose
minute or hour field starts with ``*`` run by real time, in both): :meth:`ZonedCron.dropped` is
the one filter we add. Ticks are minute-aligned UTC datetimes.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# croniter (with dateutil) is imported where a tick is first computed, not with the module:
# importing bgworkers declares every periodic actor, and a worker that never computes a tick
# does without it (tests/test_import_weight.py).

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)
_NUMERIC_RANGE = re.compile(r"(\d+)-(\d+)")
#: How far :meth:`ZonedCron.next_after` looks ahead, in days (covers ``0 0 29 2 *`` over a
#: century's gap between leap years that fall on no particular weekday).
_HORIZON_DAYS = 8 * 366


class CronError(ValueError):
    """A cron expression that cannot be parsed; the message says which field and why."""


@dataclass(frozen=True)
class CronExpression:
    """A checked five-field cron expression (see the module docstring for the semantics)."""

    source: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    by_real_time: bool  # minute or hour field starts with "*": see the fall-back rule

    @classmethod
    def parse(cls, source: str) -> CronExpression:
        fields = ALIASES.get(source.strip().lower(), source.strip()).split()
        if len(fields) != 5:
            raise CronError(f"{source!r}: expected 5 fields, got {len(fields)}")
        for first, last in _NUMERIC_RANGE.findall(" ".join(fields)):
            if int(last) < int(first):
                raise CronError(f"{source!r}: range {first}-{last} runs backwards")
        from croniter import CroniterError, croniter

        try:
            expanded, _ = croniter.expand(" ".join(fields))
        except CroniterError as exc:
            raise CronError(f"{source!r}: {exc}") from None
        return cls(
            source=" ".join(fields),
            minutes=_values(expanded[0], 60),
            hours=_values(expanded[1], 24),
            by_real_time=fields[0].startswith("*") or fields[1].startswith("*"),
        )


def _values(field: Sequence[int | str], count: int) -> tuple[int, ...]:
    return tuple(range(count)) if field == ["*"] else tuple(sorted(int(v) for v in field))


class ZonedCron:
    """The ticks of a cron expression in one time zone, as UTC instants.

    Ticks are computed a UTC day at a time and cached, so checking a minute is a set lookup:
    periodiq asks every actor at every wake-up (each minute here). On a day without an offset
    change, croniter only says whether each local date matches (the ticks of a matching date
    are its hours times its minutes); on a day with one, croniter walks the day tick by tick.
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
        found = self._croniter_walk(instant, instant + _HORIZON_DAYS * _DAY)
        return next(found, None)

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

    def dropped(self, tick: datetime) -> bool:
        """Whether croniter's zoned ``tick`` is the second copy of a fixed-time tick in a
        repeated fall-back hour, which we do not fire (see the module docstring)."""
        repeated = tick.fold == 1 and tick.replace(fold=0).utcoffset() != tick.utcoffset()
        return repeated and not self.expression.by_real_time

    def _croniter_walk(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """croniter's ticks strictly between ``start`` and ``end``, as UTC, minus dropped ones."""
        from croniter import CroniterBadDateError, croniter

        ticks = croniter(self.expression.source, start.astimezone(self.zone))
        while True:
            try:
                tick = ticks.get_next(datetime)
            except CroniterBadDateError:  # no tick for decades: "0 0 31 2 *"
                return
            if tick >= end:
                return
            if not self.dropped(tick):
                yield tick.astimezone(UTC)

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
            day += _DAY

    def _ticks_of_utc_day(self, day: date) -> tuple[datetime, ...]:
        start = datetime.combine(day, time(), UTC)
        end = start + _DAY
        offset = start.astimezone(self.zone).utcoffset()
        if offset is None or offset != end.astimezone(self.zone).utcoffset():
            return tuple(self._croniter_walk(start - _MINUTE, end))
        cron = self.expression
        found = (
            datetime.combine(local, time(hour, minute), UTC) - offset
            for local in sorted({(start + offset).date(), (end - _MINUTE + offset).date()})
            if self._matches_date(local)
            for hour in cron.hours
            for minute in cron.minutes
        )
        return tuple(t for t in found if start <= t < end)

    def _matches_date(self, local: date) -> bool:
        """Whether croniter fires on the local date at all (then at every hour and minute)."""
        from croniter import croniter

        cron = self.expression
        first = datetime.combine(local, time(cron.hours[0], cron.minutes[0]))
        return bool(croniter.match(cron.source, first))

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


def floor_minute(instant: datetime) -> datetime:
    """``instant`` in UTC, truncated to its minute."""
    return instant.astimezone(UTC).replace(second=0, microsecond=0)
