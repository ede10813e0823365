"""Rate-limit the libraries' repeated lines while RabbitMQ is away.

Why: with the broker down, pika logs four lines (one with a traceback) per connection attempt
and dramatiq's consumers retry every 3 s each, queue by queue: about 1,000 lines in 20 s that
bury bgworkers' own ``broker_unreachable`` line. This filter lets the first line of each kind
through, then at most one per ``interval_s`` per kind, carrying how many were held back;
tracebacks of these lines are reduced to the exception's one-line text. bgworkers' own lines
are never filtered (they are written to be one per condition and interval already).

A "kind" is the logger (queue suffixes like ``ConsumerThread(email)`` folded), the level and
the message template before its arguments: "Connection workflow failed: %r" is one kind
whatever the address or error in it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

#: Loggers whose repeated lines are rate-limited (prefixes).
NOISY_LOGGERS = ("pika", "dramatiq.worker.ConsumerThread", "dramatiq.broker", "dramatiq.brokers")
DEFAULT_INTERVAL_S = 60.0
_QUEUE_SUFFIX = re.compile(r"\(.*\)$")


class LibraryNoiseFilter(logging.Filter):
    """One line per kind and interval for :data:`NOISY_LOGGERS`; others pass untouched."""

    def __init__(
        self,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[tuple[str, int, str], float] = {}
        self._held: dict[tuple[str, int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(NOISY_LOGGERS):
            return True
        key = (_QUEUE_SUFFIX.sub("", record.name), record.levelno, str(record.msg)[:200])
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        _shorten(record, held, self.interval_s)
        return True


def _shorten(record: logging.LogRecord, held: int, interval_s: float) -> None:
    """Fold a traceback into the message and say how many similar lines were held back."""
    message = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        message = f"{message} ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
    record.exc_info = None
    record.exc_text = None
    if held:
        message = f"{message} [{held} similar line(s) in the last {interval_s:g} s not shown]"
    record.msg, record.args = message, None
