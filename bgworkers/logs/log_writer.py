"""Log lines written a batch at a time, by whichever thread finds a batch due.

Why: a ``dramatiq bgworkers`` worker writes one ``message_processed`` line per message from
eight threads at once. Written by each thread itself, every line took the handler's lock
(threads queued on it) and made a ``write`` system call, which gives up the GIL: with eight
threads, each line cost about two context switches. Measured with eight threads logging
20,000 lines to a file: 86 µs of CPU a line, against 30 µs with one thread; batched, 32 µs.

A thread appends its rendered line to a deque (no lock, no system call). The thread whose
line makes the batch due (its first line ``interval_s`` old, or ``max_lines`` waiting)
writes the batch in one call, unless another thread is writing it already: the lock is only
tried, so no thread ever waits on it. A daemon thread writes what an idle process leaves
waiting. A first design, with a writer thread writing every batch, was slower than no
batching: that thread had to win the GIL from busy worker threads for every batch.

What is given up, and bounded (docs/architecture.md, "Logging"): an INFO line reaches the
stream up to ``interval_s`` (50 ms) later, and is lost if the process is killed with SIGKILL
meanwhile. Lines at WARNING and above are written at once, after everything queued before
them (order is kept), so the lines that explain a failure are never held back; an orderly
exit writes everything.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable


class BatchedLineWriter:
    """Writes text lines to ``write`` (then ``flush``) in batches, as the module says.

    ``interval_s``: seconds a line may wait for its batch; ``max_lines``: a batch that long is
    written at once, however young. ``write`` and ``flush`` are called under ``lock`` (the
    handler's), never concurrently. In a forked child the lines queued in the parent before
    the fork are dropped (the parent writes them).
    """

    def __init__(
        self,
        write: Callable[[str], object],
        flush: Callable[[], object],
        lock: threading.RLock,
        *,
        interval_s: float = 0.05,
        max_lines: int = 512,
    ) -> None:
        self._write = write
        self._flush = flush
        self._lock = lock
        self.interval_s = interval_s
        self.max_lines = max_lines
        self._pending: deque[str] = deque()
        self._due = 0.0
        self._owner_pid: int | None = None
        self._start_lock = threading.Lock()
        # A child forked while another thread held the start lock would wait on it forever.
        this = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_start_lock(this))

    def submit(self, line: str, *, urgent: bool = False) -> None:
        """Queue ``line``; an urgent one is written now, after everything queued before it."""
        if self._owner_pid != os.getpid():
            self._start()
        pending = self._pending
        if not pending:
            self._due = time.monotonic() + self.interval_s
        pending.append(line)
        if urgent:
            self.flush()
        elif (
            len(pending) >= self.max_lines or time.monotonic() >= self._due
        ) and self._lock.acquire(blocking=False):
            try:
                self._write_pending()
            finally:
                self._lock.release()

    def flush(self) -> None:
        """Write everything queued (the handler's ``flush``; :func:`logging.shutdown`)."""
        with self._lock:
            self._write_pending()

    def _write_pending(self) -> None:
        pending = self._pending
        count = len(pending)
        if count:
            self._write("".join([pending.popleft() for _ in range(count)]))
        self._flush()

    def _start(self) -> None:
        # First use in this process (or in a forked child: the parent's thread did not survive
        # the fork, and its queued lines are the parent's to write). Under a lock: two threads
        # of a child logging their first lines at once must not drop each other's line.
        with self._start_lock:
            if self._owner_pid == os.getpid():
                return
            if self._owner_pid is not None:
                self._pending = deque()
            self._owner_pid = os.getpid()
        threading.Thread(target=self._run, name="bgworkers-log-writer", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval_s)
            if self._pending and time.monotonic() >= self._due:
                # The handler's write and flush report their own errors; this thread must
                # outlive anything else.
                with contextlib.suppress(Exception):
                    self.flush()


def _reset_start_lock(writer: weakref.ref[BatchedLineWriter]) -> None:
    alive = writer()
    if alive is not None:
        alive._start_lock = threading.Lock()
