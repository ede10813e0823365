"""How a reminder reads in an email: friendly, in the user's zone, as text and HTML.

Everything the user sees is rendered here, so wording stays consistent between the reminder
email and the daily summary. The product speaks English; dates are written out in full
("Wednesday 25 November 2026 at 14:30") with the zone, and relative times are rounded the
way people say them ("in 2 hours", "5 minutes ago").
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from bgworkers.reminders.recurrence import Rule, describe

_UNITS: tuple[tuple[str, int], ...] = (
    ("year", 365 * 86_400),
    ("month", 30 * 86_400),
    ("week", 7 * 86_400),
    ("day", 86_400),
    ("hour", 3_600),
    ("minute", 60),
)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def relative_time(moment: datetime, *, now: datetime) -> str:
    """ "in 2 hours", "3 days ago", "now" (within a minute); rounded down to the largest unit."""
    seconds = (moment - now).total_seconds()
    magnitude = abs(seconds)
    if magnitude < 60:
        return "now"
    for unit, size in _UNITS:
        if magnitude >= size:
            count = int(magnitude // size)
            phrase = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"in {phrase}" if seconds > 0 else f"{phrase} ago"
    raise AssertionError("unreachable")  # pragma: no cover


def local_datetime(moment: datetime, tz: ZoneInfo) -> str:
    """ "Wednesday 25 November 2026 at 14:30 (Europe/Paris)"."""
    local = moment.astimezone(tz)
    return f"{local:%A} {local.day} {local:%B %Y} at {local:%H:%M} ({tz.key})"


def local_clock(moment: datetime, tz: ZoneInfo) -> str:
    return f"{moment.astimezone(tz):%H:%M}"


def excerpt(text: str, limit: int = 60) -> str:
    """The first line of ``text``, cut at ``limit`` characters, for a subject line."""
    first_line = " ".join(text.split())
    return first_line if len(first_line) <= limit else first_line[: limit - 1].rstrip() + "…"


def render_reminder(
    *,
    text: str,
    due_at: datetime,
    tz: ZoneInfo,
    now: datetime,
    rule: Rule | None = None,
    next_due_at: datetime | None = None,
    display_name: str = "",
) -> RenderedEmail:
    """The email for a reminder whose occurrence ``due_at`` has come (or is coming)."""
    when = local_datetime(due_at, tz)
    relative = relative_time(due_at, now=now)
    greeting = f"Hello {display_name}," if display_name else "Hello,"
    lines = [greeting, "", "You asked me to remind you:", "", text, "", f"Due: {when} ({relative})"]
    html_when = f"{html.escape(when)} ({html.escape(relative)})"
    html_parts = [
        f"<p>{html.escape(greeting)}</p>",
        "<p>You asked me to remind you:</p>",
        f"<blockquote>{html_text(text)}</blockquote>",
        f"<p><strong>Due:</strong> {html_when}</p>",
    ]
    if rule is not None:
        repeat = f"Repeats {describe(rule)}"
        if next_due_at is not None:
            repeat += f"; next time: {local_datetime(next_due_at, tz)}"
        lines.append(repeat + ".")
        html_parts.append(f"<p>{html.escape(repeat)}.</p>")
    lines += ["", "-- Your assistant"]
    html_parts.append("<p>&mdash; Your assistant</p>")
    return RenderedEmail(
        subject=f"Reminder: {excerpt(text)}",
        text="\n".join(lines) + "\n",
        html=html_document("\n".join(html_parts)),
    )


def html_text(text: str) -> str:
    """Escape ``text`` for HTML, keeping its line breaks."""
    return "<br>\n".join(html.escape(line) for line in text.splitlines())


def html_document(body: str) -> str:
    """Wrap an HTML fragment in the document every email of the product uses."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"></head>\n'
        f'<body style="font-family: sans-serif; line-height: 1.4">\n{body}\n</body></html>\n'
    )


__all__ = [
    "RenderedEmail",
    "SummaryItem",
    "excerpt",
    "html_document",
    "html_text",
    "local_clock",
    "local_datetime",
    "relative_time",
    "render_reminder",
    "render_summary",
]


@dataclass(frozen=True)
class SummaryItem:
    """One line of the daily summary: a reminder occurrence or a calendar event."""

    starts_at: datetime | None  # None: all day
    title: str
    kind: str  # "reminder" or "event"
    ends_at: datetime | None = None
    note: str = ""  # "done", "tentative", ...


def render_summary(
    *,
    local_date: date,
    tz: ZoneInfo,
    reminders: list[SummaryItem],
    events: list[SummaryItem],
    display_name: str = "",
) -> RenderedEmail:
    """The daily summary: the day's calendar events and reminders, in local time."""
    day = f"{local_date:%A} {local_date.day} {local_date:%B %Y}"
    greeting = f"Good morning {display_name}," if display_name else "Good morning,"
    lines = [greeting, "", f"Here is your day, {day} ({tz.key}).", ""]
    parts = [f"<p>{html.escape(greeting)}</p>", f"<p>Here is your day, {html.escape(day)}.</p>"]
    for heading, items, empty in (
        ("Calendar", events, "No events today."),
        ("Reminders", reminders, "No reminders today."),
    ):
        lines.append(f"{heading}:")
        parts.append(f"<h3>{heading}</h3>")
        if not items:
            lines.append(f"  {empty}")
            parts.append(f"<p>{empty}</p>")
        else:
            rows = [_summary_line(item, tz) for item in items]
            lines += [f"  - {row}" for row in rows]
            parts.append("<ul>" + "".join(f"<li>{html.escape(row)}</li>" for row in rows) + "</ul>")
        lines.append("")
    lines.append("-- Your assistant")
    parts.append("<p>&mdash; Your assistant</p>")
    return RenderedEmail(
        subject=f"Your day: {local_date:%A} {local_date.day} {local_date:%B}",
        text="\n".join(lines) + "\n",
        html=html_document("\n".join(parts)),
    )


def _summary_line(item: SummaryItem, tz: ZoneInfo) -> str:
    if item.starts_at is None:
        when = "All day"
    elif item.ends_at is not None and item.ends_at > item.starts_at:
        when = f"{local_clock(item.starts_at, tz)}-{local_clock(item.ends_at, tz)}"
    else:
        when = local_clock(item.starts_at, tz)
    note = f" ({item.note})" if item.note else ""
    return f"{when}  {excerpt(item.title, 200)}{note}"
