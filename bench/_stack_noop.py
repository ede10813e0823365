"""The no-op body shared by both worker groups of ``stack_overhead.py`` (standard library only).

A message sent with ``sent_at`` (``time.time()`` at sending, seconds) appends its latency, the
seconds from sending to the actor starting, as one line to a file per worker process in
``BENCH_STACK_LATENCY_DIR``; a message without it does nothing at all (the drain phase).
"""

from __future__ import annotations

import os
import threading
import time

LATENCY_DIR_VAR = "BENCH_STACK_LATENCY_DIR"

_lock = threading.Lock()
_fd: int | None = None


def _latency_fd() -> int:
    global _fd
    with _lock:
        if _fd is None:
            path = os.path.join(os.environ[LATENCY_DIR_VAR], f"{os.getpid()}.txt")
            _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return _fd


def noop(sent_at: float) -> None:
    if sent_at:
        # One write(2) of a short line on an O_APPEND file: atomic between threads.
        os.write(_latency_fd(), f"{time.time() - sent_at:.6f}\n".encode())
