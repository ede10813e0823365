"""Close each worker process's shared resources (HTTP clients, SMTP connections) at shutdown.

Why a registry: a domain makes its client once per process, on first use (STYLE: shared
resources per worker process, nothing opened at import). The domain registers how to close it
with :func:`close_at_worker_shutdown`; one middleware runs every closer after the worker's last
message, so keep-alive connections end cleanly instead of being dropped at exit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dramatiq.middleware import Middleware

from bgworkers.logs import get_logger

log = get_logger(__name__)

_closers: dict[str, Callable[[], None]] = {}


def close_at_worker_shutdown(name: str, closer: Callable[[], None]) -> None:
    """Register ``closer`` (idempotent, safe when nothing was opened) under ``name``."""
    _closers[name] = closer


class CloseResources(Middleware):
    def after_worker_shutdown(self, broker: Any, worker: Any) -> None:
        for name, closer in list(_closers.items()):
            try:
                closer()
            except Exception as exc:  # noqa: BLE001 - one failing closer must not skip the rest
                log.warning("resource_close_failed", resource=name, error=repr(exc))
