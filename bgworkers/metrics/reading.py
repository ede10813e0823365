"""A value refreshed by a background thread, so scrapes and probes never wait on a service.

Why: ``/metrics`` and ``/readyz`` answer within a probe's timeout (often 1 s) even when
RabbitMQ or the database hangs; they serve the latest reading, and its age and error count
say how fresh it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.loggers import get_logger

T = TypeVar("T")
log = get_logger(__name__)


class BackgroundReading(Generic[T]):
    """Calls ``read`` every ``interval_s`` seconds on its own thread; keeps the last result.

    The collectors and the readiness checks are readings (subclasses) that export the last one.
    """

    def __init__(
        self, name: str, read: Callable[[], T], *, initial: T, interval_s: float, start: bool = True
    ) -> None:
        self.name = name
        self._read = read
        self._interval_s = interval_s
        self._value = initial
        self._last_success = 0.0  # Unix time; 0: never
        self._errors = 0
        self._lock = threading.Lock()
        if start:
            threading.Thread(target=self._loop, name=name, daemon=True).start()

    def refresh(self) -> None:
        try:
            value = self._read()
        except Exception as exc:  # noqa: BLE001 - any failure is a failed reading, logged
            with self._lock:
                self._errors += 1
            log.warning("reading_failed", reading=self.name, error=failure_reason(exc))
            return
        with self._lock:
            self._value = value
            self._last_success = time.time()

    def snapshot(self) -> tuple[T, float, int]:
        """(last value, Unix time of the last successful read or 0, failed reads so far)."""
        with self._lock:
            return self._value, self._last_success, self._errors

    def _loop(self) -> None:
        while True:
            self.refresh()
            time.sleep(self._interval_s)
