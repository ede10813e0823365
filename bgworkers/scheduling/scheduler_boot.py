"""The start of a ``periodiq bgworkers`` scheduler process.

periodiq has no process hook: :func:`bgworkers.stack.wire_for_cli` calls
:func:`boot_scheduler` when periodiq's CLI is the one loading bgworkers.
"""

from __future__ import annotations

from collections.abc import Callable

from bgworkers.processes.boot import boot_process
from bgworkers.settings import Settings


def boot_scheduler(
    start_scheduler_endpoint: Callable[[Settings], object], settings: Settings | None = None
) -> None:
    """The scheduler's logging, its ``/metrics``, ``/healthz`` and ``/readyz`` endpoint, and
    sends retried while RabbitMQ is away (:mod:`bgworkers.scheduling.resilient_sending`).

    ``start_scheduler_endpoint``: handed in by the stack, since what the endpoint serves
    (readiness checks, the registry) is put together in a package above this one.
    """
    from bgworkers.scheduling import resilient_sending

    settings = boot_process(settings, service="bgworkers-scheduler")
    resilient_sending.install(settings.broker_url.get_secret_value())
    start_scheduler_endpoint(settings)
