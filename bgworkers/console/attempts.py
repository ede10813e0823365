"""Timelines: each attempt of a message — when it started, how long it ran, how it ended.

Only messages that failed at least once get rows, written by
:class:`~bgworkers.console.middleware.DeadLetterIndex`, so a message that succeeds first time
costs nothing; docs/console.md ("Timelines") says what is kept and for how long.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, delete, select

from bgworkers.console.models import Attempt
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.loggers import redact_text

#: Rows kept per message; later attempts of a message retried longer are not recorded.
MAX_ATTEMPTS_RECORDED = 50
#: Characters of an attempt's error that are stored.
ATTEMPT_ERROR_MAX_CHARS = 500
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def trace_id_of(options: Mapping[str, Any]) -> str:
    """The trace id (32 hex digits) of the ``traceparent`` a message carries, or ""."""
    match = _TRACEPARENT.fullmatch(str(options.get("traceparent", ""))[:64])
    return match[1] if match and match[1] != "0" * 32 else ""


def attempt_number(options: Mapping[str, Any]) -> int:
    """1 for a first run, 2 for the first retry, and so on."""
    retries = options.get("retries", 0)
    return (retries if isinstance(retries, int) and retries >= 0 else 0) + 1


def attempt_error(exception: BaseException | None) -> str:
    """The attempt's failure in one short line (a database error without its statement)."""
    if exception is None:
        return ""
    text = failure_reason(exception)[: ATTEMPT_ERROR_MAX_CHARS * 2]
    return redact_text(text)[:ATTEMPT_ERROR_MAX_CHARS]


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt as the worker saw it; ``duration_s`` in seconds."""

    message_id: str
    attempt: int
    started_at: datetime
    duration_s: float
    outcome: str  # retried, dead or succeeded
    error: str = ""


def record_attempt(session: Session, record: AttemptRecord) -> bool:
    """Add the attempt's row unless the message already has its bounded share of them."""
    if record.attempt > MAX_ATTEMPTS_RECORDED:
        return False
    session.add(
        Attempt(
            message_id=record.message_id[:64],
            attempt=record.attempt,
            started_at=record.started_at,
            duration_s=round(max(record.duration_s, 0.0), 6),
            outcome=record.outcome[:20],
            error=record.error[:ATTEMPT_ERROR_MAX_CHARS],
        )
    )
    return True


def attempts_of(session: Session, message_id: str) -> list[Attempt]:
    """The recorded attempts of one message, oldest first."""
    query = (
        select(Attempt)
        .where(Attempt.message_id == message_id)
        .order_by(col(Attempt.started_at), col(Attempt.attempt))
        .limit(MAX_ATTEMPTS_RECORDED * 2)
    )
    return list(session.exec(query))


def prune_attempts(session: Session, *, before: datetime) -> int:
    """Delete attempts that started before ``before``; return how many."""
    statement = delete(Attempt).where(col(Attempt.started_at) < before)
    return int(session.exec(statement).rowcount)


def timeline(rows: list[Attempt]) -> list[dict[str, Any]]:
    """Attempts as JSON-ready data, each with the wait since the previous one ended (s)."""
    out: list[dict[str, Any]] = []
    previous_end: datetime | None = None
    for row in rows:
        waited = (row.started_at - previous_end).total_seconds() if previous_end else None
        out.append(
            {
                "attempt": row.attempt,
                "started_at": row.started_at.isoformat(),
                "duration_s": row.duration_s,
                "waited_s": round(waited, 3) if waited is not None else None,
                "outcome": row.outcome,
                "error": row.error,
            }
        )
        previous_end = row.started_at + timedelta(seconds=row.duration_s)
    return out


def timeline_lines(entries: list[dict[str, Any]]) -> list[str]:
    """The timeline as terminal lines, one per attempt."""
    if not entries:
        return ["  (no attempt recorded)"]
    lines = []
    for entry in entries:
        waited = f" after {entry['waited_s']:.3f} s" if entry["waited_s"] is not None else ""
        ran = f"ran {entry['duration_s']:.3f} s"
        head = f"  #{entry['attempt']:<3} {entry['started_at']}{waited}"
        lines.append(f"{head}  {ran}  {entry['outcome']:<9} {entry['error']}".rstrip())
    return lines
