"""Wiring of the processes bgworkers starts (logging, tracing), kept out of ``import bgworkers``:
an application that imports bgworkers keeps its own logging and starts no thread or server.

Each process calls one function here at its start (docs/architecture.md, "Processes"): a
``dramatiq bgworkers`` worker process through dramatiq's ``process_boot`` hook
(:class:`WorkerProcessBoot`); ``periodiq bgworkers``, which has no hook, through
:func:`bgworkers.scheduling.resilient_sending.boot_scheduler`; the ``bgworkers`` command from its
``main()``.
"""

from __future__ import annotations

from dramatiq import Broker
from dramatiq.middleware import Middleware

from bgworkers.errors import ConfigurationError
from bgworkers.logs.loggers import configure_logging
from bgworkers.settings import Settings, broker_addresses, get_settings
from bgworkers.tracing.config import configure_tracing


def boot_process(
    settings: Settings | None = None, *, batched_logs: bool = False, service: str = "bgworkers"
) -> Settings:
    """Set up logging (and tracing, when the ``OTEL_*`` variables ask for it, as ``service``)
    for one of bgworkers' own processes; return the settings in use.

    ``batched_logs``: INFO lines are written in batches (worker processes, which write one
    per message from many threads: :mod:`bgworkers.logs.log_writer`).
    """
    settings = settings or get_settings()
    configure_logging(
        log_format=settings.log_format,
        level=settings.log_level,
        batched=batched_logs,
        broker_nodes=broker_nodes(settings),
    )
    configure_tracing(service)
    return settings


def broker_nodes(settings: Settings) -> list[str]:
    """``host:port`` of each configured RabbitMQ node (no user, no password); none if the
    URL cannot be read (the broker's own check says why, in its own line)."""
    try:
        return broker_addresses(settings.broker_url.get_secret_value())
    except (ConfigurationError, ValueError):  # a malformed URL is reported where it is used
        return []


class WorkerProcessBoot(Middleware):
    """Sets up a ``dramatiq bgworkers`` worker process's logging when dramatiq boots it."""

    def after_process_boot(self, broker: Broker) -> None:
        boot_process(batched_logs=True, service="bgworkers-worker")
