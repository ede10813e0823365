"""The HTTP endpoint Prometheus scrapes: ``/metrics``, ``/healthz`` and ``/readyz``.

Under ``dramatiq bgworkers`` one worker process of the group serves it from a thread (see
:class:`bgworkers.middleware.exporter.GroupExporter` and :func:`start_group_exporter`),
reading every worker process's values from the group's shared multiprocess directory. Tests
and single-process tools call :func:`start_metrics_server` with their own registry. Bound to
``BGW_METRICS_HOST:BGW_METRICS_PORT``, 127.0.0.1:9191 by default: metrics are not for the
whole network unless an operator says so.

A port already in use (for example a second worker group on the same host) is logged as
``metrics_port_in_use`` and leaves the workers running; give each group its own
``BGW_METRICS_PORT``.
"""

from __future__ import annotations

import errno
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from bgworkers.logs.loggers import get_logger
from bgworkers.settings import Settings

if TYPE_CHECKING:  # the collectors (HTTP client, database) load only where they are served
    from bgworkers.monitoring.health import Readiness

log = get_logger(__name__)


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        registry: CollectorRegistry,
        readiness: Readiness | None = None,
    ) -> None:
        self.registry = registry
        self.readiness = readiness
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._reply(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/readyz":
            results = self.server.readiness.results() if self.server.readiness else []
            ready = all(result.ok for result in results)
            body = json.dumps(
                {
                    "ready": ready,
                    "checks": {r.name: {"ok": r.ok, "detail": r.detail} for r in results},
                }
            )
            self._reply(200 if ready else 503, body.encode() + b"\n", "application/json")
        else:
            self._reply(404, b"not found\n", "text/plain; charset=utf-8")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every 15 s would drown the log; errors still reach stderr via log_error."""


def start_metrics_server(
    registry: CollectorRegistry, host: str, port: int, readiness: Readiness | None = None
) -> MetricsServer:
    """Serve ``registry`` on a background thread; ``port=0`` picks a free port."""
    server = MetricsServer((host, port), registry, readiness)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def multiprocess_registry(directory: Path) -> CollectorRegistry:
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return registry


def start_group_exporter(settings: Settings, directory: Path) -> MetricsServer | None:
    """Serve the worker group's sums from ``directory`` on a background thread.

    With the group's collectors: queue depths from RabbitMQ, per-job last successes and the
    outbox backlog from the database, each read every ``BGW_QUEUE_DEPTH_INTERVAL_S``.
    """
    from bgworkers.metrics.multiproc import remove_dead_runs
    from bgworkers.monitoring.job_health import JobHealthCollector
    from bgworkers.monitoring.process_stats import WorkerGroupProcessCollector
    from bgworkers.monitoring.queue_depth import collector_from_settings
    from bgworkers.monitoring.recorded_gauges import recorded_gauge_collector
    from bgworkers.outbox.metrics import backlog_collector

    remove_dead_runs(settings.metrics_dir.resolve(), keep=directory)
    registry = multiprocess_registry(directory)
    registry.register(
        collector_from_settings(
            settings.broker_url.get_secret_value(),
            settings.rabbitmq_management_url,
            settings.queue_depth_interval_s,
        )
    )
    registry.register(JobHealthCollector(settings, interval_s=settings.queue_depth_interval_s))
    registry.register(backlog_collector(settings))
    registry.register(recorded_gauge_collector(settings))
    registry.register(WorkerGroupProcessCollector())
    server = _bind(
        settings.metrics_host, settings.metrics_port, registry, settings, "BGW_METRICS_PORT"
    )
    if server is not None:
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def _bind(
    host: str, port: int, registry: CollectorRegistry, settings: Settings, variable: str
) -> MetricsServer | None:
    from bgworkers.monitoring.health import readiness_for

    try:
        server = MetricsServer((host, port), registry, readiness_for(settings))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        log.error(
            "metrics_port_in_use",
            host=host,
            port=port,
            hint=f"another process serves this port; set {variable} per process group",
        )
        return None
    log.info("metrics_serving", host=host, port=port)
    return server


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

    server = _bind(settings.metrics_host, port, REGISTRY, settings, variable)
    if server is not None:
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
