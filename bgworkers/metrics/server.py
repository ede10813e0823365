"""The HTTP endpoint Prometheus scrapes: ``/metrics`` and ``/healthz``.

Under ``dramatiq bgworkers`` it runs in one extra process that dramatiq's CLI forks for the
:class:`~bgworkers.middleware.metrics.MessageMetrics` middleware (see
:func:`serve_cli_metrics`), reading every worker process's values from the shared
multiprocess directory. Tests and single-process tools call :func:`start_metrics_server`
with their own registry. Bound to ``BGW_METRICS_HOST:BGW_METRICS_PORT``, 127.0.0.1:9191
by default: metrics are not for the whole network unless an operator says so.

A port already in use (for example a second worker group on the same host) is logged as
``metrics_port_in_use`` and leaves the workers running; give each group its own
``BGW_METRICS_PORT``.
"""

from __future__ import annotations

import errno
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from bgworkers.logs import get_logger

log = get_logger(__name__)


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry) -> None:
        self.registry = registry
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._reply(200, b"ok\n", "text/plain; charset=utf-8")
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


def start_metrics_server(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serve ``registry`` on a background thread; ``port=0`` picks a free port."""
    server = MetricsServer((host, port), registry)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def multiprocess_registry(directory: Path) -> CollectorRegistry:
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return registry


def serve_cli_metrics() -> int:
    """Fork function run by dramatiq's CLI: serve the sum of all worker processes' metrics."""
    from bgworkers.metrics.multiproc import ENV_VAR, remove_dead_runs
    from bgworkers.settings import get_settings

    settings = get_settings()
    directory = Path(os.environ[ENV_VAR])
    remove_dead_runs(settings.metrics_dir.resolve(), keep=directory)
    try:
        server = MetricsServer(
            (settings.metrics_host, settings.metrics_port), multiprocess_registry(directory)
        )
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        log.error(
            "metrics_port_in_use",
            host=settings.metrics_host,
            port=settings.metrics_port,
            hint="another process serves this port; set BGW_METRICS_PORT per worker group",
        )
        return 0
    log.info("metrics_serving", host=settings.metrics_host, port=settings.metrics_port)
    server.serve_forever()
    return 0
