"""Wiring of the processes bgworkers starts, kept out of ``import bgworkers``.

Why a module of its own: an application imports bgworkers to enqueue work and must keep its
logging, get exceptions it can catch and find no thread or server started (see
:mod:`bgworkers`). The processes that bgworkers *is* — the ``dramatiq bgworkers`` workers (one
of which also serves the group's metrics), the ``periodiq bgworkers`` scheduler and the
``bgworkers`` command — need more: logging set up once, and the scheduler's HTTP endpoint.
Each calls one function here at its start:

- worker processes: dramatiq's ``process_boot`` hook (:class:`WorkerProcessBoot`, added to the
  RabbitMQ broker), emitted by dramatiq's CLI right after it imported the broker module;
- the scheduler: periodiq has no hook, so ``import bgworkers`` calls :func:`boot_scheduler`
  when the running program is periodiq's CLI (:func:`operator_command`);
- the ``bgworkers`` command: :func:`bgworkers.cli.admin.main` calls :func:`boot_process`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from dramatiq import Broker
from dramatiq.middleware import Middleware

from bgworkers.logs.loggers import configure_logging
from bgworkers.settings import Settings, get_settings

OperatorCommand = Literal["dramatiq", "periodiq", "bgworkers"]
_COMMANDS: dict[str, OperatorCommand] = {
    "dramatiq": "dramatiq",
    "periodiq": "periodiq",
    "bgworkers": "bgworkers",
}


def operator_command(argv: list[str] | None = None) -> OperatorCommand | None:
    """The operator CLI this process is (or is a child of), from ``argv[0]``; else None.

    ``python -m dramatiq`` shows as ``.../dramatiq/__main__.py`` and ``python -m bgworkers.cli``
    as ``.../bgworkers/cli.py``. An application's process is none of them.
    """
    args = sys.argv if argv is None else argv
    path = Path(args[0]) if args and args[0] else Path()
    if path.name in _COMMANDS:
        return _COMMANDS[path.name]
    if path.name == "__main__.py" or (path.name == "cli.py" and path.parent.name == "bgworkers"):
        return _COMMANDS.get(path.parent.name)
    return None


def boot_process(settings: Settings | None = None, *, batched_logs: bool = False) -> Settings:
    """Set up logging for one of bgworkers' own processes; return the settings in use.

    ``batched_logs``: INFO lines are written in batches (worker processes, which write one
    per message from many threads: :mod:`bgworkers.logs.log_writer`).
    """
    settings = settings or get_settings()
    configure_logging(
        log_format=settings.log_format, level=settings.log_level, batched=batched_logs
    )
    return settings


def boot_scheduler(settings: Settings | None = None) -> None:
    """The scheduler's logging, its ``/metrics``, ``/healthz`` and ``/readyz`` endpoint, and
    sends retried while RabbitMQ is away (:mod:`bgworkers.scheduling.resilient_sending`)."""
    from bgworkers.metrics.server import start_scheduler_endpoint
    from bgworkers.scheduling import resilient_sending

    settings = boot_process(settings)
    resilient_sending.install(settings.broker_url.get_secret_value())
    start_scheduler_endpoint(settings)


class WorkerProcessBoot(Middleware):
    """Sets up a ``dramatiq bgworkers`` worker process's logging when dramatiq boots it."""

    def after_process_boot(self, broker: Broker) -> None:
        boot_process(batched_logs=True)
