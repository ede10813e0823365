"""Recurrence rules of reminders, evaluated on the user's wall clock.

A rule is written as text (the ``recurrence`` column):

* ``daily`` -- every day at the local time of the first occurrence;
* ``weekly`` or ``weekly:mon,wed,fri`` -- on those weekdays (default: the first one's);
* ``monthly`` -- on the day of month of the first occurrence; in shorter months on their
  last day (the 31st becomes the 30th or Feb 28/29, and goes back to the 31st after);
* ``yearly`` -- on the first occurrence's date; Feb 29 becomes Feb 28 in common years;
* ``cron:<minute> <hour> <day> <month> <weekday>`` -- a cron expression on local time.

Why on the wall clock: "every day at 09:00" must stay at 09:00 for the user when daylight
saving time starts or ends, so occurrences are computed as local dates and times and only
then converted to UTC. A local time that does not exist (skipped by a spring-forward
transition) moves forward by the gap (02:30 becomes 03:30); a local time that exists twice
(fall-back) fires once, at its first instance.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Kind = Literal["daily", "weekly", "monthly", "yearly", "cron"]

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Reminders may not recur more often than this (a mailbox is not a pager).
MIN_INTERVAL = timedelta(hours=1)
# Bounds the search for a cron match (e.g. "0 9 29 2 *" matches once in 4 years).
_MAX_CRON_STEPS = 10_000


class RecurrenceError(ValueError):
    """A recurrence rule that cannot be understood; the message is meant for the user."""


@dataclass(frozen=True)
class Rule:
    kind: Kind
    weekdays: tuple[int, ...] = ()  # Monday is 0, for ``weekly``
    cron: str | None = None

    def __str__(self) -> str:
        if self.kind == "weekly" and self.weekdays:
            return "weekly:" + ",".join(WEEKDAYS[d] for d in self.weekdays)
        if self.kind == "cron":
            return f"cron:{self.cron}"
        return self.kind


def parse_rule(text: str) -> Rule:
    """Parse a rule written as described in the module docstring."""
    raw = text.strip()
    kind, _, argument = raw.partition(":")
    kind = kind.strip().lower()
    argument = argument.strip()
    if kind in ("daily", "monthly", "yearly") and not argument:
        return Rule(kind=kind)  # type: ignore[arg-type]
    if kind == "weekly":
        return Rule(kind="weekly", weekdays=_parse_weekdays(argument))
    if kind == "cron":
        return Rule(kind="cron", cron=_parse_cron(argument))
    raise RecurrenceError(
        f"The repeat rule {raw!r} is not understood. Use daily, weekly, weekly:mon,thu, "
        "monthly, yearly or cron:<minute> <hour> <day> <month> <weekday>."
    )


def _parse_weekdays(argument: str) -> tuple[int, ...]:
    if not argument:
        return ()
    days: set[int] = set()
    for part in argument.split(","):
        name = part.strip().lower()[:3]
        if name not in WEEKDAYS:
            raise RecurrenceError(
                f"{part.strip()!r} is not a weekday. Use mon, tue, wed, thu, fri, sat or sun."
            )
        days.add(WEEKDAYS.index(name))
    return tuple(sorted(days))


def _parse_cron(argument: str) -> str:
    # croniter (with dateutil) is imported where a cron rule is read: most worker processes
    # never see one, and the package is ~4 MiB of every process that imports it.
    from croniter import croniter

    expression = " ".join(argument.split())
    if len(expression.split(" ")) != 5 or not croniter.is_valid(expression):
        raise RecurrenceError(
            f"The cron expression {argument!r} is not valid; it needs five fields: "
            "minute hour day-of-month month day-of-week (e.g. '0 9 * * 1-5')."
        )
    return expression


def to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """Attach ``tz`` to a naive local time (first instance if ambiguous) and convert to UTC."""
    return local.replace(tzinfo=tz, fold=0).astimezone(UTC)


def local_time_exists(local: datetime, tz: ZoneInfo) -> bool:
    """False for wall times skipped by a spring-forward transition."""
    back = to_utc(local, tz).astimezone(tz).replace(tzinfo=None)
    return back == local


def next_occurrence(rule: Rule, *, first: datetime, tz: ZoneInfo, after: datetime) -> datetime:
    """The first occurrence strictly after ``after`` (UTC, aware), never before ``first``.

    ``first`` is the reminder's first occurrence (aware); it anchors the local time of day,
    weekday, day of month and date. Missed occurrences are not replayed: the result is the
    next one after ``after``.
    """
    after = max(after, first - timedelta(microseconds=1))
    anchor = first.astimezone(tz).replace(tzinfo=None)
    start = after.astimezone(tz).date()
    if rule.kind == "cron":
        return _next_cron(rule.cron or "", tz=tz, after=after)
    for day in _candidate_dates(rule, anchor=anchor.date(), start=start):
        occurrence = to_utc(datetime.combine(day, anchor.time()), tz)
        if occurrence > after:
            return occurrence
    raise AssertionError("unreachable: candidate dates are unbounded")  # pragma: no cover


def _candidate_dates(rule: Rule, *, anchor: date, start: date) -> Iterator[date]:
    """Local dates on which ``rule`` fires, from ``start`` (inclusive) onwards, unbounded."""
    if rule.kind in ("daily", "weekly"):
        weekdays = rule.weekdays or (anchor.weekday(),)
        day = start
        while True:
            if rule.kind == "daily" or day.weekday() in weekdays:
                yield day
            day += timedelta(days=1)
    elif rule.kind == "monthly":
        year, month = start.year, start.month
        while True:
            yield _clamped(year, month, anchor.day)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    else:
        for year in itertools.count(start.year):
            yield _clamped(year, anchor.month, anchor.day)


def _clamped(year: int, month: int, day: int) -> date:
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def _next_cron(expression: str, *, tz: ZoneInfo, after: datetime) -> datetime:
    # croniter walks naive wall-clock times; each match is converted to UTC here, so DST
    # never makes it skip or repeat a match the way it does on aware datetimes.
    from croniter import CroniterBadDateError, croniter

    cursor = after.astimezone(tz).replace(tzinfo=None)
    matches = croniter(expression, cursor)
    try:
        for _ in range(_MAX_CRON_STEPS):
            local: datetime = matches.get_next(datetime)
            occurrence = to_utc(local, tz)
            if occurrence > after:
                return occurrence
    except CroniterBadDateError:
        pass  # croniter found no matching date at all (e.g. February 30)
    raise RecurrenceError(
        f"The cron expression {expression!r} never fires (no date matches it, "
        "e.g. February 30); choose another day or month."
    )


def first_occurrence(rule: Rule, *, due_at: datetime, tz: ZoneInfo) -> datetime:
    """The reminder's first occurrence: the first match of ``rule`` at or after ``due_at``.

    Why: ``weekly:mon`` entered for a Tuesday, or ``cron:0 9 * * *`` entered for 08:59, must
    first fire on the rule's schedule, not at ``due_at``. Only ``weekly`` with weekdays and
    ``cron`` rules can miss ``due_at``; the others are anchored on it and return it unchanged.
    """
    if rule.kind == "cron" or (rule.kind == "weekly" and rule.weekdays):
        return next_occurrence(rule, first=due_at, tz=tz, after=due_at - timedelta(microseconds=1))
    return due_at


def occurrences_between(
    rule: Rule | None, *, first: datetime, tz: ZoneInfo, start: datetime, end: datetime, limit: int
) -> list[datetime]:
    """Occurrences in ``[start, end)`` (UTC), at most ``limit`` of them."""
    found: list[datetime] = []
    if rule is None:
        return [first] if start <= first < end else []
    cursor = start - timedelta(microseconds=1)
    while len(found) < limit:
        cursor = next_occurrence(rule, first=first, tz=tz, after=cursor)
        if cursor >= end:
            break
        found.append(cursor)
    return found


def shortest_gap(rule: Rule, *, first: datetime, tz: ZoneInfo, samples: int = 60) -> timedelta:
    """The shortest time between consecutive occurrences among the next ``samples``.

    Measured between occurrences of the rule only: ``first`` is moved to the rule's first
    match at or after it (:func:`first_occurrence`), so a ``due_at`` off the schedule does not
    count as an occurrence.
    """
    gap = timedelta.max
    first = first_occurrence(rule, due_at=first, tz=tz)
    previous = first
    for _ in range(samples):
        current = next_occurrence(rule, first=first, tz=tz, after=previous)
        gap = min(gap, current - previous)
        previous = current
    return gap


def describe(rule: Rule | None) -> str:
    """A short English phrase for emails: "every day", "every Monday and Thursday"."""
    if rule is None:
        return "once"
    if rule.kind == "daily":
        return "every day"
    if rule.kind == "weekly":
        if not rule.weekdays:
            return "every week"
        names = [calendar.day_name[d] for d in rule.weekdays]
        joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"every {joined}"
    if rule.kind == "monthly":
        return "every month"
    if rule.kind == "yearly":
        return "every year"
    return f"on the schedule {rule.cron}"


__all__ = [
    "MIN_INTERVAL",
    "RecurrenceError",
    "Rule",
    "describe",
    "first_occurrence",
    "local_time_exists",
    "next_occurrence",
    "occurrences_between",
    "parse_rule",
    "shortest_gap",
    "to_utc",
]
