"""Writes the dead-letter index at the moment a worker dead-letters a message.

Placed just before the retry policy in the stack: dramatiq runs ``after_*`` hooks in reverse
order, so this one sees the policy's decision (``message.failed``, the reason it set) and the
exception. A message failed by an earlier hook and skipped (the schedule guard giving up, an
age limit) is indexed from ``after_skip_message``. Writing the row must never change what
happens to the message: a database error is logged and the message still goes to the XQ,
which stays the backstop. It also writes each attempt of a message that fails at least once
(:mod:`bgworkers.console.attempts`).

``before_enqueue`` stamps the time of a message's first failure into its options when the
retry policy re-enqueues it, so the row can tell "first failed" from "last failed".
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dramatiq import Broker, Message
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from bgworkers.console.attempts import AttemptRecord, attempt_error, attempt_number, record_attempt
from bgworkers.console.dead_letters import (
    FIRST_FAILURE_OPTION,
    REQUEUES_OPTION,
    Failure,
    mark_processed,
    record_dead_letter,
)
from bgworkers.db.engine import session_scope, utcnow
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.loggers import get_logger
from bgworkers.middleware.retry_policy import REASON_ATTR

log = get_logger(__name__)

#: Attribute of a message proxy: when its attempt started (Unix seconds, perf counter) and
#: its number.
_STARTED_ATTR = "_bgw_attempt_started"


def _write(failure: Failure) -> None:
    with session_scope() as session:
        record_dead_letter(session, failure)


@dataclass
class IndexBacklog:
    """Dead letters the index could not record while the database was away, written once it
    is back (after a later message): an operator looks at the index, where a dead letter that
    fell in a database outage would otherwise be missing. Limits and losses: docs/console.md
    ("The dead-letter index"). ``clock`` in monotonic seconds; the oldest beyond
    :attr:`max_items` are dropped and counted."""

    max_items: int = 500
    retry_every_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    dropped: int = 0
    _items: deque[Failure] = field(default_factory=deque)
    _next_try: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, failure: Failure) -> None:
        if failure.exception is not None and failure.exception.__traceback__ is not None:
            # Keep the lines of the traceback, not the frames' local variables.
            traceback.clear_frames(failure.exception.__traceback__)
        with self._lock:
            self._items.append(failure)
            while len(self._items) > self.max_items:
                self._items.popleft()
                self.dropped += 1
            self._next_try = self.clock() + self.retry_every_s

    def flush(self, write: Callable[[Failure], None]) -> int:
        """Write what waits, oldest first, if it is time to try; return how many were written.

        Stops at the first failure (the database is still away) and tries again later.
        """
        with self._lock:
            if not self._items or self.clock() < self._next_try:
                return 0
            items, self._items = list(self._items), deque()
        written = 0
        try:
            for failure in items:
                write(failure)
                written += 1
        except Exception:  # whatever stopped the write: keep the rest for later, re-raise
            with self._lock:
                self._items.extendleft(reversed(items[written:]))
                self._next_try = self.clock() + self.retry_every_s
            raise
        return written


class DeadLetterIndex(Middleware):
    """Indexes dead-lettered messages; marks requeued ones that then succeed.

    What cannot be written while the database is away waits in :attr:`backlog`
    (:class:`IndexBacklog`) and is written after a later message.
    """

    def __init__(self) -> None:
        self.backlog = IndexBacklog()
        self._attempts_dropped = 0
        self._dropped_logged_at: float | None = None

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: int) -> None:
        options = message.options
        if "requeue_timestamp" in options and FIRST_FAILURE_OPTION not in options:
            options[FIRST_FAILURE_OPTION] = options["requeue_timestamp"]

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        # The attempt's number now: the retry policy's after-hook counts the attempt it ends.
        options = message.options if isinstance(message.options, dict) else {}
        setattr(message, _STARTED_ATTR, (time.time(), time.perf_counter(), attempt_number(options)))

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if self.backlog:
            self._write_backlog()
        if message.failed:
            reason = getattr(message, REASON_ATTR, None) or "failed"
            self._record(message, reason, exception, _attempt(message, "dead", exception))
            return
        if exception is not None:
            self._write_attempt(_attempt(message, "retried", exception))
        elif _attempt_number(message) > 1:
            self._write_attempt(_attempt(message, "succeeded", None))
        if exception is None and message.options.get(REQUEUES_OPTION):
            self._mark_processed(message)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        if message.failed:
            self._record(message, getattr(message, REASON_ATTR, None) or "skipped_failed", None)

    def _record(
        self,
        message: MessageProxy,
        reason: str,
        exception: BaseException | None,
        attempt: AttemptRecord | None = None,
    ) -> None:
        started = time.perf_counter()
        failure = Failure(
            message_id=str(message.message_id),
            queue=str(message.queue_name),
            actor=str(message.actor_name),
            args=message.args if isinstance(message.args, list | tuple) else [],
            kwargs=message.kwargs if isinstance(message.kwargs, dict) else {},
            options=message.options if isinstance(message.options, dict) else {},
            reason=reason,
            exception=exception,
            at=utcnow(),
            attempt=attempt,
        )
        try:
            _write(failure)
        except Exception as exc:  # noqa: BLE001 - the index is a convenience; the XQ keeps the message
            self.backlog.add(failure)
            log.error(
                "dead_letter_index_failed",
                error=failure_reason(exc)[:300],
                waiting=len(self.backlog),
                hint="kept in this process and written once the database answers",
            )
            return
        log.info(
            "dead_letter_indexed",
            reason=reason,
            index_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    def _write_backlog(self) -> None:
        try:
            written = self.backlog.flush(_write)
        except Exception as exc:  # noqa: BLE001 - still away: the backlog waits for the next try
            log.warning(
                "dead_letter_backlog_waiting",
                waiting=len(self.backlog),
                error=failure_reason(exc)[:300],
            )
            return
        if written:
            log.info("dead_letters_indexed_late", count=written, dropped=self.backlog.dropped)

    def _write_attempt(self, attempt: AttemptRecord | None) -> None:
        if attempt is None:
            return
        try:
            with session_scope() as session:
                record_attempt(session, attempt)
        except Exception as exc:  # noqa: BLE001 - a timeline line only; the message goes on
            self._attempt_dropped(exc)

    def _attempt_dropped(self, exc: Exception) -> None:
        """One line a minute while the database does not answer, with how many were dropped."""
        self._attempts_dropped += 1
        now = time.monotonic()
        if self._dropped_logged_at is not None and now - self._dropped_logged_at < 60:
            return
        self._dropped_logged_at = now
        log.warning(
            "attempt_not_recorded",
            error=failure_reason(exc)[:300],
            dropped=self._attempts_dropped,
            hint="the attempts of retried messages are missing from their timelines meanwhile",
        )

    def _mark_processed(self, message: MessageProxy) -> None:
        try:
            with session_scope() as session:
                mark_processed(session, str(message.message_id))
        except Exception as exc:  # noqa: BLE001 - a status line only; the work itself succeeded
            log.error("dead_letter_index_failed", error=failure_reason(exc)[:300])


def _attempt(
    message: MessageProxy, outcome: str, exception: BaseException | None
) -> AttemptRecord | None:
    """The attempt that just ended, or None if its start was not seen (a skipped message)."""
    started = getattr(message, _STARTED_ATTR, None)
    if started is None:
        return None
    wall, counter, number = started
    return AttemptRecord(
        message_id=str(message.message_id),
        attempt=number,
        started_at=datetime.fromtimestamp(wall, UTC),
        duration_s=time.perf_counter() - counter,
        outcome=outcome,
        error=attempt_error(exception),
    )


def _attempt_number(message: MessageProxy) -> int:
    started = getattr(message, _STARTED_ATTR, None)
    return int(started[2]) if started else 1
