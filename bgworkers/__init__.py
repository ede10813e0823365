"""bgworkers: the background tasks of the personal-assistant backend.

Importing this package is what ``dramatiq bgworkers`` and ``periodiq bgworkers`` do, and what an
application does to enqueue work. So it only declares: it reads the settings, builds the
RabbitMQ broker with bgworkers' middleware, makes it dramatiq's global broker and imports every
domain's actors. It opens no connection, changes no logging, starts no thread or server, and a
bad ``BGW_*`` value raises :class:`~bgworkers.errors.ConfigurationError`, which the application
can catch. What a worker or scheduler process needs beyond that (logging, metrics and health
endpoints) is set up by that process's boot hook: see :mod:`bgworkers.processes.boot`.
"""

from __future__ import annotations

import importlib
import sys

from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bgworkers.errors import ConfigurationError
from bgworkers.metrics.multiproc import prepare_multiprocess_dir
from bgworkers.processes.boot import operator_command
from bgworkers.settings import get_settings

#: Every module that declares actors, one per domain; a new domain adds its line here.
ACTOR_MODULES: tuple[str, ...] = (
    "bgworkers.maintenance.actors",
    "bgworkers.reminders.actors",
    "bgworkers.email.actors",
    "bgworkers.files.actors",
    "bgworkers.sync.actors",
    "bgworkers.scheduling.actors",
)

_configuration_error: ConfigurationError | None = None


def _wire() -> RabbitmqBroker:
    """Build and install the broker, then declare every actor on it."""
    settings = get_settings()
    prepare_multiprocess_dir(settings.metrics_dir)  # before anything imports prometheus_client
    from bgworkers.brokers.rabbitmq import build_broker, install

    built = build_broker(settings)
    install(built)
    for module in ACTOR_MODULES:
        importlib.import_module(module)
    return built


try:
    broker: RabbitmqBroker = _wire()
except ConfigurationError as _error:
    if operator_command() is not None:
        # Under dramatiq's or periodiq's CLI a traceback from a child process is easy to miss
        # and says nothing new: one plain line, and the configuration exit code.
        print(f"bgworkers: {_error}", file=sys.__stderr__, flush=True)
        raise SystemExit(2) from None
    # An application: importing still works, so it can import bgworkers.errors and catch the
    # ConfigurationError that every use of the settings (an api module, ``broker``) raises.
    _configuration_error = _error


def __getattr__(name: str) -> object:
    if name == "broker" and _configuration_error is not None:
        raise _configuration_error
    raise AttributeError(f"module 'bgworkers' has no attribute {name!r}")


if operator_command() == "periodiq":
    # periodiq has no process hook of its own (see bgworkers.processes.boot).
    from bgworkers.processes.boot import boot_scheduler

    boot_scheduler()

__all__ = ["ACTOR_MODULES", "broker"]
