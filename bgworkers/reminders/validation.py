"""Validation of reminders: the one place that decides whether a reminder can be scheduled.

Every problem is collected (not just the first) and worded for the user, because the
application shows these messages as they are. A reminder is entered in the user's zone:
a naive ``due_at`` is a local wall time there; an aware one is taken as the instant it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bgworkers.errors import PermanentError
from bgworkers.reminders.recurrence import (
    MIN_INTERVAL,
    RecurrenceError,
    Rule,
    first_occurrence,
    local_time_exists,
    next_occurrence,
    parse_rule,
    shortest_gap,
    to_utc,
)

#: Characters; a reminder is a note, not a document (the email carries it whole).
MAX_TEXT_LENGTH = 1000
CHANNELS = ("email",)


class ReminderValidationError(PermanentError):
    """The reminder cannot be scheduled; ``problems`` are sentences for the user."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ValidReminder:
    text: str
    timezone: str
    due_at: datetime  # aware, UTC
    rule: Rule | None
    channel: str

    @property
    def recurrence(self) -> str | None:
        return None if self.rule is None else str(self.rule)


def load_zone(name: str) -> ZoneInfo | None:
    """The IANA zone called ``name``, or None if there is no such zone.

    OSError too: a name that is a folder of the zone database ("Europe") or too long for a
    file name makes ``ZoneInfo`` raise it, and such a name is as unknown as "Mars/Olympus".
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def validate_reminder(
    *,
    text: str,
    due_at: datetime,
    timezone: str,
    recurrence: str | None,
    now: datetime,
    channel: str = "email",
    catch_up: bool = False,
) -> ValidReminder:
    """Check and normalise a reminder; raise :class:`ReminderValidationError` listing problems.

    The returned ``due_at`` is the first occurrence: for ``weekly:<days>`` and ``cron:`` rules
    the first match of the rule at or after the given time (see
    :func:`~bgworkers.reminders.recurrence.first_occurrence`). ``catch_up`` is for a change
    that keeps the reminder's old time: a past time of a repeating reminder then moves to the
    rule's next occurrence after ``now`` instead of being rejected.
    """
    problems = _text_problems(text)
    clean_text = text.strip()
    if channel not in CHANNELS:
        problems.append(f"Reminders can only be delivered by email, not by {channel!r}.")
    zone = load_zone(timezone)
    if zone is None:
        problems.append(
            f"{timezone!r} is not a known time zone; use a name such as Europe/Paris "
            "or America/New_York."
        )
        raise ReminderValidationError(problems)
    due_utc = _due_in_utc(due_at, zone, timezone, problems)
    rule, first = _rule(recurrence, due_utc, zone, problems)
    if rule is not None and first is not None and catch_up and first <= now:
        try:
            first = next_occurrence(rule, first=first, tz=zone, after=now)
        except RecurrenceError as exc:
            problems.append(str(exc))
    elif due_utc is not None and due_utc <= now:
        local = due_utc.astimezone(zone)
        advice = (
            "give the reminder a new time to schedule it again."
            if catch_up
            else "choose a time in the future."
        )
        problems.append(f"The time {local:%d %b %Y %H:%M} ({timezone}) is in the past; {advice}")
    if problems or due_utc is None:
        raise ReminderValidationError(problems)
    return ValidReminder(
        text=clean_text,
        timezone=timezone,
        due_at=due_utc if first is None else first,
        rule=rule,
        channel=channel,
    )


def _text_problems(text: str) -> list[str]:
    clean_text = text.strip()
    if not clean_text:
        return ["The reminder text is empty; say what you want to be reminded of."]
    if len(clean_text) > MAX_TEXT_LENGTH:
        return [
            f"The reminder text is too long ({len(clean_text):,} characters; "
            f"the limit is {MAX_TEXT_LENGTH:,})."
        ]
    return []


def validate_text(text: str) -> str:
    """Check a reminder's text alone; return it stripped."""
    problems = _text_problems(text)
    if problems:
        raise ReminderValidationError(problems)
    return text.strip()


def _due_in_utc(
    due_at: datetime, zone: ZoneInfo, name: str, problems: list[str]
) -> datetime | None:
    if due_at.tzinfo is not None:
        return due_at.astimezone(UTC)
    if not local_time_exists(due_at, zone):
        problems.append(
            f"{due_at:%H:%M} on {due_at:%d %b %Y} does not exist in {name} (the clocks "
            "skip that hour for daylight saving time); choose another time."
        )
        return None
    return to_utc(due_at, zone)


def _rule(
    recurrence: str | None, due_utc: datetime | None, zone: ZoneInfo, problems: list[str]
) -> tuple[Rule | None, datetime | None]:
    """The parsed rule and the reminder's first occurrence under it (None without a rule)."""
    if recurrence is None or not recurrence.strip():
        return None, None
    try:
        rule = parse_rule(recurrence)
        if due_utc is None:
            return rule, None
        first = first_occurrence(rule, due_at=due_utc, tz=zone)
        if shortest_gap(rule, first=first, tz=zone) < MIN_INTERVAL:
            problems.append("A reminder cannot repeat more often than once an hour.")
    except RecurrenceError as exc:
        problems.append(str(exc))
        return None, None
    return rule, first
