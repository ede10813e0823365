"""The dead-letter index: what failed, why and when, one row per dead-lettered message.

Why an index: AMQP has no non-destructive read, so ``<queue>.XQ`` cannot be browsed (see
docs/console.md). Rows are written by :class:`~bgworkers.console.middleware.DeadLetterIndex`
and pruned once their message has expired from the XQ (:func:`prune_dead_letters`).
Arguments are redacted like log lines and capped, so the index never holds a secret or a
megabyte blob.
"""

from __future__ import annotations

import json
import os
import re
import traceback as tb
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
from sqlmodel import Session, col, delete, select

from bgworkers.console.attempts import AttemptRecord, prune_attempts, record_attempt, trace_id_of
from bgworkers.console.models import DeadLetter
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.loggers import redact_text, redact_value

#: How long RabbitMQ keeps a dead letter in ``<queue>.XQ``, in milliseconds (dramatiq's TTL).
DEAD_MESSAGE_TTL_MS: int = DEAD_MESSAGE_TTL
#: Caps on what a row stores, in characters.
ARGUMENTS_MAX_CHARS = 4_000
ERROR_MAX_CHARS = 1_000
TRACEBACK_MAX_CHARS = 8_000
#: Message option: when the message first failed (Unix milliseconds), stamped on its first retry.
FIRST_FAILURE_OPTION = "bgw_first_failed_at"
#: Message option: how many times an operator requeued the message.
REQUEUES_OPTION = "bgw_requeues"


@dataclass(frozen=True)
class Failure:
    """What the worker knows when it dead-letters a message."""

    message_id: str
    queue: str
    actor: str
    args: tuple[Any, ...] | list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    reason: str
    exception: BaseException | None
    at: datetime
    #: The dead-lettering attempt, for the message's timeline (None: skipped, never ran).
    attempt: AttemptRecord | None = None


def cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying how long it was."""
    if len(text) <= limit:
        return text
    marker = f"…({len(text)} chars)"
    return text[: max(limit - len(marker), 0)] + marker


def summarise_arguments(args: Any, kwargs: Any) -> str:
    """Redacted JSON of a message's arguments, at most :data:`ARGUMENTS_MAX_CHARS`.

    Each string is capped before redaction so the cost stays bounded whatever the size.
    """
    safe = {
        "args": redact_value("args", _bounded(args)),
        "kwargs": redact_value("kwargs", _bounded(kwargs)),
    }
    return cap(json.dumps(safe, default=repr, ensure_ascii=False), ARGUMENTS_MAX_CHARS)


def _bounded(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return cap(value, ARGUMENTS_MAX_CHARS)
    if depth > 5:
        return "…(nested)"
    if isinstance(value, dict):
        items = list(value.items())[:50]
        return {str(k)[:100]: _bounded(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple):
        return [_bounded(v, depth + 1) for v in value[:50]]
    if value is None or isinstance(value, bool | int | float):
        return value
    return cap(repr(value), 200)


def error_summary(exception: BaseException | None, reason: str) -> tuple[str, str]:
    """``("Type: message", traceback)``, redacted and capped; the reason alone without one.

    A database error is given by its short reason (:func:`failure_reason`), in the error and
    in the traceback: SQLAlchemy's text, and the driver's, hold the statement and the values
    bound to it, which are what our users wrote.
    """
    if exception is None:
        return reason, ""
    error = redact_text(cap(failure_reason(exception), ERROR_MAX_CHARS))
    trace = _FRAME_FILE.sub(_short_path, _traceback_text(exception))
    # The end is kept: the innermost frames and the error.
    return error, redact_text(trace, limit=TRACEBACK_MAX_CHARS, keep_end=True)


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _traceback_text(exception: BaseException) -> str:
    """Python's traceback of ``exception`` and the exceptions it came from (at most 30 frames
    each), with each exception's line made as :func:`_exception_line` says."""
    blocks: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exception
    while current is not None and id(current) not in seen and len(blocks) < 10:
        seen.add(id(current))
        frames = tb.format_tb(current.__traceback__, limit=30)
        head = ["Traceback (most recent call last):\n", *frames] if frames else []
        cause = current.__cause__
        context = None if current.__suppress_context__ else current.__context__
        link = _CAUSE if cause is not None else _CONTEXT if context is not None else ""
        blocks.append(link + "".join(head) + _exception_line(current, exception) + "\n")
        current = cause or context
    return "".join(reversed(blocks)).lstrip("\n")


def _exception_line(exc: BaseException, outermost: BaseException) -> str:
    """``Type: text``; for a SQLAlchemy error or the driver's error it wraps, the database
    error's short reason instead of the text."""
    if type(exc).__module__.startswith("sqlalchemy."):
        return f"{type(exc).__name__}: {failure_reason(exc)}"
    wrapper = _wrapper_of(exc, outermost)
    if wrapper is not None:
        return failure_reason(wrapper)
    return f"{type(exc).__name__}: {exc}"


def _wrapper_of(exc: BaseException, outermost: BaseException) -> BaseException | None:
    """The SQLAlchemy error in ``outermost``'s chain whose ``orig`` is ``exc``, if any."""
    seen: set[int] = set()
    current: BaseException | None = outermost
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "orig", None) is exc and type(current).__module__.startswith(
            "sqlalchemy."
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


_FRAME_FILE = re.compile(r'File "([^"]+)"')


def _short_path(match: re.Match[str]) -> str:
    """A frame's file as the reader knows it: the package path, not this host's layout."""
    path = match.group(1)
    _, found, inside = path.rpartition("site-packages/")
    if found:
        return f'File "{inside}"'
    cwd = os.getcwd().rstrip("/") + "/"
    return f'File "{path.removeprefix(cwd)}"'


def record_dead_letter(session: Session, failure: Failure) -> DeadLetter:
    """Insert or update the row of a message that was just dead-lettered."""
    error, trace = error_summary(failure.exception, failure.reason)
    first_ms = failure.options.get(FIRST_FAILURE_OPTION)
    first = (
        datetime.fromtimestamp(first_ms / 1000, UTC)
        if isinstance(first_ms, int | float) and 0 < first_ms < 10**14
        else failure.at
    )
    row = session.get(DeadLetter, failure.message_id, with_for_update=True)
    retries = failure.options.get("retries", 0)
    if row is None:
        row = DeadLetter(
            message_id=failure.message_id,
            queue=failure.queue[:100],
            actor=failure.actor[:200],
            first_failed_at=first,
            last_failed_at=failure.at,
            dead_count=0,
        )
    row.queue = failure.queue[:100]
    row.actor = failure.actor[:200]
    row.arguments = summarise_arguments(failure.args, failure.kwargs)
    row.retries = retries if isinstance(retries, int) else 0
    row.reason = failure.reason[:50]
    row.error = error
    row.traceback = trace
    row.first_failed_at = min(row.first_failed_at, first)
    row.last_failed_at = failure.at
    row.dead_count += 1
    row.status = "dead"
    row.trace_id = trace_id_of(failure.options) or row.trace_id
    session.add(row)
    if failure.attempt is not None:
        record_attempt(session, failure.attempt)
    return row


def mark_processed(session: Session, message_id: str) -> bool:
    """A requeued message succeeded: its row says so (it stays until pruned)."""
    row = session.get(DeadLetter, message_id)
    if row is None or row.status != "requeued":
        return False
    row.status = "processed"
    session.add(row)
    return True


_AGE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str) -> datetime:
    """``30m``, ``2h``, ``7d`` (ago) or an ISO 8601 time (UTC when it names no zone), for the
    CLI's ``--since`` and the web page's filter alike; ValueError for anything else."""
    match = _AGE.match(text.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return datetime.now(UTC) - timedelta(**{_UNITS[unit]: amount})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r}: expected an age (30m, 2h, 7d) or an ISO time (2026-12-01T10:00)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DeadLetterFilter:
    queue: str | None = None
    actor: str | None = None
    since: datetime | None = None
    status: str | None = "dead"  # None: every status
    limit: int = 200


def list_dead_letters(session: Session, where: DeadLetterFilter) -> list[DeadLetter]:
    """Newest first."""
    query = select(DeadLetter)
    if where.queue:
        query = query.where(DeadLetter.queue == where.queue)
    if where.actor:
        query = query.where(DeadLetter.actor == where.actor)
    if where.since:
        query = query.where(col(DeadLetter.last_failed_at) >= where.since)
    if where.status:
        query = query.where(DeadLetter.status == where.status)
    query = query.order_by(col(DeadLetter.last_failed_at).desc()).limit(where.limit)
    return list(session.exec(query))


def prune_dead_letters(session: Session, *, now: datetime) -> int:
    """Delete rows whose message RabbitMQ has expired from the XQ, and attempts as old;
    return how many dead letters."""
    before = now - timedelta(milliseconds=DEAD_MESSAGE_TTL_MS)
    statement = delete(DeadLetter).where(col(DeadLetter.last_failed_at) < before)
    pruned = int(session.exec(statement).rowcount)
    prune_attempts(session, before=before)
    return pruned


def as_dict(row: DeadLetter, *, full: bool = False) -> dict[str, Any]:
    """A row as JSON-ready data; ``full`` adds the traceback."""
    data: dict[str, Any] = {
        "message_id": row.message_id,
        "queue": row.queue,
        "actor": row.actor,
        "status": row.status,
        "reason": row.reason,
        "error": row.error,
        "retries": row.retries,
        "dead_count": row.dead_count,
        "first_failed_at": row.first_failed_at.isoformat(),
        "last_failed_at": row.last_failed_at.isoformat(),
        "requeued_at": row.requeued_at.isoformat() if row.requeued_at else None,
        "trace_id": row.trace_id or None,
        "arguments": _loads(row.arguments),
    }
    if full:
        data["traceback"] = row.traceback
    return data


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # capped: no longer valid JSON, shown as stored
