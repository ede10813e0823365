"""The composition root: what puts the packages below together into bgworkers' broker.

- ``broker``: ``build_broker`` (the middleware, in order) and the stub broker with the same
  stack;
- ``known_series``: every domain's counters at 0 from a worker's start (handed to
  ``MessageMetrics``);
- ``tables``: every module that declares tables, so ``SQLModel.metadata`` knows them all.

Nothing below imports it: :mod:`bgworkers.brokers.wiring` is handed its builder at start-up.
Here (not in ``broker``): :func:`build_app_broker` and :func:`wire_for_cli`, which import
the stack only after a worker process's metrics directory is set up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dramatiq


def build_app_broker(*, worker_process: bool = False) -> dramatiq.Broker:
    """bgworkers' broker from the process's settings, installed as dramatiq's broker (what
    :func:`bgworkers.brokers.wiring.app_broker` calls, once per process)."""
    import dramatiq

    from bgworkers.settings import get_settings

    settings = get_settings()  # a bad setting raises ConfigurationError here
    if worker_process:
        from bgworkers.metrics.multiproc import prepare_multiprocess_dir

        # Before anything imports prometheus_client (see bgworkers.metrics.multiproc).
        prepare_multiprocess_dir(settings.metrics_dir)
    # Only now: the stack's modules may import prometheus_client.
    from bgworkers.stack.broker import build_broker

    built = build_broker(settings, worker_process=worker_process)
    dramatiq.set_broker(built)
    return built


def wire_for_cli() -> dramatiq.Broker:
    """What ``dramatiq bgworkers`` and ``periodiq bgworkers`` load: the whole broker, and under
    periodiq the scheduler's logging, metrics endpoint and resilient sends."""
    import sys

    from bgworkers.brokers.wiring import wire

    broker = wire(worker_process=True)
    if "periodiq" in sys.modules:
        from bgworkers.monitoring.endpoints import start_scheduler_endpoint
        from bgworkers.scheduling.resilient_sending import boot_scheduler

        boot_scheduler(start_scheduler_endpoint)
    return broker
