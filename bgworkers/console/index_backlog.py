"""Dead letters the index could not record while the database was away, written once it is back.

Why: the message itself always reaches ``<queue>.XQ`` (RabbitMQ is the backstop), but an
operator looks at the console, which lists the index: a dead letter that fell in a database
outage was in the XQ and nowhere on the page. Each worker process keeps such failures in
memory (at most :attr:`IndexBacklog.max_items`; the oldest are dropped, and counted in the
log) and tries again at most every :attr:`IndexBacklog.retry_every_s` seconds, whenever a
later message finishes. A process that dies before the database is back loses its backlog;
the XQ still has the messages (``bgworkers dead requeue --all``).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from bgworkers.console.dead_letters import Failure


@dataclass
class IndexBacklog:
    """Failures waiting for the index; ``clock`` in monotonic seconds."""

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
