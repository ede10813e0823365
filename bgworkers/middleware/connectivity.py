"""Say plainly in the log when the worker cannot reach RabbitMQ.

Why: dramatiq's consumers retry a lost connection every few seconds, logging pika's
traceback each time, and the worker still logs "ready". This middleware probes the broker
once the worker has booted and, until it answers, logs one line per interval (60 s) naming the
condition (``broker_unreachable``, ``broker_auth_refused``, ``broker_vhost_missing``), the
password-free URL and the fix; the libraries' own repeated lines are rate-limited by
:mod:`bgworkers.logs.log_noise`.
"""

from __future__ import annotations

import threading

from dramatiq import Broker, Worker
from dramatiq.middleware import Middleware

from bgworkers.logs.loggers import get_logger, redact_text

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
            # One line per interval, named by the condition: broker_unreachable,
            # broker_auth_refused, broker_vhost_missing or broker_access_refused.
            log.error(
                problem.condition,
                broker_url=redact_text(self.url),
                hint=f"{problem.message}. The worker keeps retrying; messages wait in "
                "RabbitMQ meanwhile.",
            )
            self._stop.wait(self.interval_s)
