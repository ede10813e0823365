"""Close each worker process's shared resources.

See :mod:`bgworkers.processes.process_resources`.
"""

from __future__ import annotations

from dramatiq import Broker, Worker
from dramatiq.middleware import Middleware

from bgworkers.processes.process_resources import close_all


class CloseResources(Middleware):
    """Closes the process's engine, HTTP client and mailer when its worker stops."""

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        close_all()
