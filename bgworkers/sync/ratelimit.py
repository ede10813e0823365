"""A process-local rate limiter: requests spaced evenly at a configured rate per second.

The provider limits themselves are shared by every process through the database
(:mod:`bgworkers.sync.shared_limits`); this local limiter is what a process falls back to, at
a conservative share of the rate, while that store cannot be reached.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Grants one slot every ``1 / rate_per_s`` seconds; thread-safe.

    ``clock`` returns monotonic seconds and ``sleep`` waits seconds; tests inject a fake pair.
    """

    def __init__(
        self,
        rate_per_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.interval_s = 1.0 / rate_per_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot: float | None = None
        self._paused_until = 0.0

    def acquire(self) -> float:
        """Wait for the next slot; return the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    def reserve(self) -> float:
        """Reserve the next slot without waiting; return the seconds until it."""
        with self._lock:
            now = self._clock()
            slot = now if self._next_slot is None else max(now, self._next_slot)
            self._next_slot = slot + self.interval_s
        return slot - now

    def pause(self, seconds: float) -> None:
        """Grant no slot before ``seconds`` from now (a server's ``Retry-After``)."""
        with self._lock:
            until = self._clock() + seconds
            self._next_slot = until if self._next_slot is None else max(self._next_slot, until)
            self._paused_until = max(self._paused_until, until)

    def paused_for(self) -> float:
        """Seconds until the latest :meth:`pause` ends (0 when none holds)."""
        with self._lock:
            return max(self._paused_until - self._clock(), 0.0)


_lock = threading.Lock()
_limiters: dict[tuple[str, float], RateLimiter] = {}


def process_limiter(name: str, rate_per_s: float) -> RateLimiter:
    """The process-wide limiter for ``name`` at ``rate_per_s``, created on first use."""
    with _lock:
        key = (name, rate_per_s)
        if key not in _limiters:
            _limiters[key] = RateLimiter(rate_per_s)
        return _limiters[key]


def _forget_limiters_after_fork() -> None:
    # A lock held by another thread of the parent would stay locked forever in the child.
    global _lock
    _lock = threading.Lock()
    _limiters.clear()


os.register_at_fork(after_in_child=_forget_limiters_after_fork)
