"""The broker bgworkers' actors live on: built on first need, installed once per process.

Why on demand: importing a module of bgworkers must build nothing (an application imports
``bgworkers.errors`` or an ``api`` module, a test imports one function). The broker is made
the first time something needs it:

- an actor is declared (``@task``, when an actor module is imported): :func:`app_broker`;
- an application or a test reads ``bgworkers.broker``: :func:`wire` (the broker and every
  domain's actors);
- dramatiq's or periodiq's CLI loads ``bgworkers`` by name: :func:`wire_for_cli`, from the
  package's ``__init__`` (see there why it is the one import that wires).

Making the broker opens no connection: RabbitMQ is first contacted when a worker starts or a
message is sent.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dramatiq

#: Every module that declares actors, one per domain; a new domain adds its line here.
ACTOR_MODULES: tuple[str, ...] = (
    "bgworkers.maintenance.actors",
    "bgworkers.reminders.actors",
    "bgworkers.email.actors",
    "bgworkers.files.actors",
    "bgworkers.sync.actors",
    "bgworkers.scheduling.actors",
)

# Re-entrant: importing the actor modules declares actors, which asks for the broker again.
_lock = threading.RLock()
_broker: dramatiq.Broker | None = None


def app_broker(*, worker_process: bool = False) -> dramatiq.Broker:
    """bgworkers' RabbitMQ broker, made on the first call and installed as dramatiq's broker.

    ``worker_process``: the broker of a process that dramatiq's or periodiq's CLI runs; it also
    carries the middleware whose hooks only such a process should run (see
    :func:`bgworkers.brokers.rabbitmq.build_broker`). Only the first call decides.
    """
    global _broker
    with _lock:
        if _broker is None:
            from bgworkers.settings import get_settings

            settings = get_settings()  # a bad setting raises ConfigurationError here
            if worker_process:
                from bgworkers.metrics.multiproc import prepare_multiprocess_dir

                # Before anything imports prometheus_client (see bgworkers.metrics.multiproc).
                prepare_multiprocess_dir(settings.metrics_dir)
            from bgworkers.brokers.rabbitmq import build_broker, install

            built = build_broker(settings, worker_process=worker_process)
            install(built)
            _broker = built
        return _broker


def wire(*, worker_process: bool = False) -> dramatiq.Broker:
    """The broker with every domain's actors declared on it."""
    broker = app_broker(worker_process=worker_process)
    for module in ACTOR_MODULES:
        importlib.import_module(module)
    return broker


def wire_for_cli() -> dramatiq.Broker:
    """What ``dramatiq bgworkers`` and ``periodiq bgworkers`` load: the whole broker, and under
    periodiq the scheduler's logging, metrics endpoint and resilient sends."""
    import sys

    broker = wire(worker_process=True)
    if "periodiq" in sys.modules:
        from bgworkers.scheduling.scheduler_boot import boot_scheduler

        boot_scheduler()
    return broker
