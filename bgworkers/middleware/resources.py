"""Close each worker process's shared resources (see :mod:`bgworkers.process_resources`)."""

from __future__ import annotations

from typing import Any

from dramatiq.middleware import Middleware

from bgworkers.process_resources import close_all


class CloseResources(Middleware):
    def after_worker_shutdown(self, broker: Any, worker: Any) -> None:
        close_all()
