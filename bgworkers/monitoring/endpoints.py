"""What each of bgworkers' processes serves on its ``/metrics``, ``/healthz`` and ``/readyz``.

Here, above the packages whose collectors and checks it puts together; why:
docs/architecture.md, "Layout". :mod:`bgworkers.metrics.server` only serves what it is given.
"""

from __future__ import annotations

from pathlib import Path

from bgworkers.metrics.server import MetricsServer, serve_endpoint
from bgworkers.monitoring.health import readiness_for
from bgworkers.settings import Settings


def start_group_exporter(settings: Settings, directory: Path) -> MetricsServer | None:
    """Serve the worker group's sums from ``directory``, and the collectors of what every group
    reads alike (RabbitMQ, the database), on a background thread."""
    from prometheus_client import CollectorRegistry, multiprocess

    from bgworkers.metrics.multiproc import remove_dead_runs
    from bgworkers.metrics.recorded_gauges import recorded_gauge_collector
    from bgworkers.monitoring.job_health import JobHealthCollector
    from bgworkers.monitoring.process_stats import WorkerGroupProcessCollector
    from bgworkers.monitoring.queue_depth import QueueDepthCollector, reader_from_settings
    from bgworkers.outbox.metrics import OutboxBacklogCollector, read_backlog_now

    remove_dead_runs(settings.metrics_dir.resolve(), keep=directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    interval_s = settings.queue_depth_interval_s
    read_depths = reader_from_settings(
        settings.broker_url.get_secret_value(), settings.rabbitmq_management_url
    )
    registry.register(QueueDepthCollector(read_depths, interval_s=interval_s))
    registry.register(JobHealthCollector(settings, interval_s=interval_s))
    registry.register(
        OutboxBacklogCollector(lambda: read_backlog_now(settings), interval_s=interval_s)
    )
    registry.register(recorded_gauge_collector(settings))
    registry.register(WorkerGroupProcessCollector())
    return serve_endpoint(
        settings.metrics_host,
        settings.metrics_port,
        registry,
        readiness_for(settings),
        "BGW_METRICS_PORT",
    )


def start_scheduler_endpoint(settings: Settings) -> MetricsServer | None:
    """The scheduler's own ``/metrics``, ``/healthz`` and ``/readyz`` (a background thread)."""
    return _start_process_endpoint(
        settings, settings.scheduler_metrics_port, "BGW_SCHEDULER_METRICS_PORT"
    )


def start_relay_endpoint(settings: Settings) -> MetricsServer | None:
    """A relay run on its own (``python -m bgworkers.outbox``): its ``/metrics`` (published,
    failed batches, pruned: at 0 from its start), ``/healthz`` and ``/readyz``."""
    from bgworkers.outbox.metrics import OUTBOX_METRICS

    OUTBOX_METRICS.get().zero()
    return _start_process_endpoint(settings, settings.relay_metrics_port, "BGW_RELAY_METRICS_PORT")


def _start_process_endpoint(settings: Settings, port: int, variable: str) -> MetricsServer | None:
    from prometheus_client import REGISTRY

    return serve_endpoint(settings.metrics_host, port, REGISTRY, readiness_for(settings), variable)
