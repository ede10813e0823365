"""At most one log line per interval for a condition that repeats (a database away).

Why: a condition that every message meets (the database does not answer) would otherwise
write one line per message and attempt; the operator needs one line a minute saying what is
wrong and how to fix it, and how many similar lines were held back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class LogInterval:
    """Says whether to log now; thread-safe, per process.

    :meth:`due` is True at most once per ``interval_s`` seconds; :attr:`held_back` is how
    many calls were refused since the last True (read it right after a True).
    """

    def __init__(
        self, interval_s: float = 60.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: float | None = None
        self._refused = 0
        self.held_back = 0
        self._lock = threading.Lock()

    def due(self) -> bool:
        now = self._clock()
        with self._lock:
            if self._last is not None and now - self._last < self.interval_s:
                self._refused += 1
                return False
            self._last, self.held_back, self._refused = now, self._refused, 0
            return True

    def reset(self) -> None:
        """Forget the last line: the condition ended, and if it comes back, its first
        :meth:`due` is True at once."""
        with self._lock:
            self._last, self._refused = None, 0


class LogIntervalsByKey:
    """One :class:`LogInterval` per key (a condition's name, a kind of line), made on first
    use: two conditions that alternate each get their own line per interval."""

    def __init__(
        self, interval_s: float = 60.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._intervals: dict[Hashable, LogInterval] = {}
        self._lock = threading.Lock()

    def of(self, key: Hashable) -> LogInterval:
        with self._lock:
            interval = self._intervals.get(key)
            if interval is None:
                interval = self._intervals[key] = LogInterval(self.interval_s, clock=self._clock)
            return interval
