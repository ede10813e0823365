"""Worker hooks, no message hooks (docs/architecture.md, "Middleware (in order)", says what
each does).

:class:`BrokerConnectivityCheck`. Why: dramatiq's consumers retry a lost connection every few
seconds, logging pika's traceback each time, and the worker still logs "ready". Until RabbitMQ
answers it logs one line a minute named by the condition (``broker_unreachable``,
``broker_auth_refused``, ``broker_vhost_missing``, ``broker_access_refused``); the libraries'
own repeated lines are rate-limited by :mod:`bgworkers.logs.log_noise`.

:class:`CloseResources`: see :mod:`bgworkers.processes.process_resources`.

:class:`GroupExporter`. Why not a process of its own: dramatiq's CLI starts a middleware's
``forks`` from its main process, which has not imported bgworkers, so that process imported the
whole package again (every domain, its database and HTTP libraries) to serve a few kilobytes:
about 80 MiB per worker group, more than a bare dramatiq worker group in all. Instead the
first worker process to lock ``exporter.lock`` in the group's metrics directory serves the
endpoint and the others serve nothing. The lock goes with its process, and dramatiq's CLI
stops the whole group when any worker process dies, so the group is never left running
without its endpoint. A reload (``--watch``, SIGHUP) stops every
worker first, so one of the new ones takes the lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from dramatiq import Broker, Worker
from dramatiq.middleware import Middleware

from bgworkers.logs.loggers import get_logger, redact_text
from bgworkers.metrics.multiproc import ENV_VAR, is_dramatiq_cli_child
from bgworkers.processes.process_resources import close_all

if TYPE_CHECKING:
    from bgworkers.metrics.server import MetricsServer

log = get_logger(__name__)


class BrokerConnectivityCheck(Middleware):
    """Probe RabbitMQ after worker boot; log clearly while it is unreachable."""

    def __init__(self, *, url: str, interval_s: float = 60.0) -> None:
        self.url = url
        self.interval_s = interval_s
        self._stop = threading.Event()

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        threading.Thread(target=self._watch, name="broker-probe", daemon=True).start()

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        self._stop.set()

    def _watch(self) -> None:
        from bgworkers.brokers.broker_nodes import probe_broker_problem

        while not self._stop.is_set():
            problem = probe_broker_problem(self.url)
            if problem is None:
                log.info("broker_reachable", broker_url=redact_text(self.url))
                return
            log.error(
                problem.condition,
                broker_url=redact_text(self.url),
                hint=f"{problem.message}. The worker keeps retrying; messages wait in "
                "RabbitMQ meanwhile.",
            )
            self._stop.wait(self.interval_s)


class CloseResources(Middleware):
    """Closes the process's engine, HTTP client and mailer when its worker stops."""

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        close_all()


LOCK_NAME = "exporter.lock"


def claim_exporter(directory: Path) -> IO[bytes] | None:
    """The locked ``exporter.lock`` of ``directory`` if this caller is the group's exporter,
    else None (another process holds it). Keep the handle open for as long as it serves."""
    handle = open(directory / LOCK_NAME, "ab")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


class GroupExporter(Middleware):
    """Serves the group's metrics endpoint from the one worker process that claims it.

    ``serve``: starts the endpoint on the group's multiprocess directory (handed in by the
    stack: the collectors it serves belong to packages above this one).
    """

    def __init__(self, serve: Callable[[Path], MetricsServer | None]) -> None:
        self._serve = serve
        self._claim: IO[bytes] | None = None
        self._server: MetricsServer | None = None

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        directory = os.environ.get(ENV_VAR)
        if not directory or not is_dramatiq_cli_child() or self._claim is not None:
            return  # not a worker of dramatiq's CLI: tests and tools serve their own registry
        self._claim = claim_exporter(Path(directory))
        if self._claim is not None:
            self._server = self._serve(Path(directory))

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        claim, self._claim = self._claim, None
        if claim is not None:
            claim.close()  # releases the lock
