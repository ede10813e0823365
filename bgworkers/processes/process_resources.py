"""Shared resources of a worker process (database engine, HTTP client, SMTP connections).

Why: each is made once per process, on first use (never at import, never per message), must
not be inherited by a forked child, and should be closed when the worker stops so keep-alive
connections end cleanly. :class:`ProcessResource` does all three; the closing itself is run by
:class:`bgworkers.middleware.worker_hooks.CloseResources` after the worker's last message.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from bgworkers.logs.loggers import get_logger

log = get_logger(__name__)
T = TypeVar("T")

_closers: dict[str, Callable[[], None]] = {}


def close_at_worker_shutdown(name: str, closer: Callable[[], None]) -> None:
    """Register ``closer`` (idempotent, safe when nothing was opened) under ``name``."""
    _closers[name] = closer


def close_all() -> None:
    """Run every registered closer; one failing does not keep the others from running."""
    for name, closer in list(_closers.items()):
        try:
            closer()
        except Exception as exc:  # noqa: BLE001 - one failing closer must not skip the rest
            log.warning("resource_close_failed", resource=name, error=repr(exc))


class ProcessResource(Generic[T]):
    """One ``T`` per worker process, with the life cycle above (``replace``: for tests); each
    shared resource declares one instead of its own global, lock and fork hook."""

    def __init__(
        self,
        name: str,
        *,
        close: Callable[[T], None] | None = None,
        after_fork: Callable[[T], None] | None = None,
    ) -> None:
        """``close`` (optional) is run at worker shutdown; ``after_fork`` in a forked child."""
        self._close = close
        self._after_fork = after_fork
        self._lock = threading.Lock()
        self._value: T | None = None
        if close is not None:
            close_at_worker_shutdown(name, self.close)
        os.register_at_fork(after_in_child=self._forget_after_fork)

    def get(self, build: Callable[[], T]) -> T:
        """The process's instance, made with ``build`` the first time."""
        with self._lock:
            if self._value is None:
                self._value = build()
            return self._value

    def replace(self, value: T | None) -> T | None:
        """Install ``value`` (None: build again on next use); return the previous one."""
        with self._lock:
            previous, self._value = self._value, value
        return previous

    def close(self) -> None:
        """Close and forget the instance, if any (idempotent)."""
        previous = self.replace(None)
        if previous is not None and self._close is not None:
            self._close(previous)

    def _forget_after_fork(self) -> None:
        # The parent's sockets and pooled connections must not be used by the child.
        if self._value is not None and self._after_fork is not None:
            self._after_fork(self._value)
        self._value = None
