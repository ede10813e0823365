"""The HTTP endpoint Prometheus scrapes: ``/metrics``, ``/healthz`` and ``/readyz``.

Under ``dramatiq bgworkers`` one worker process of the group serves it from a thread (see
:class:`bgworkers.middleware.worker_hooks.GroupExporter`), reading every worker process's values
from the group's multiprocess directory; tests call :func:`start_metrics_server` with their
own registry. Addresses and ports: docs/monitoring.md, "Endpoints" (127.0.0.1 by default:
metrics are not for the whole network unless an operator says so).
"""

from __future__ import annotations

import errno
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from bgworkers.logs.loggers import get_logger

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


def serve_endpoint(
    host: str,
    port: int,
    registry: CollectorRegistry,
    readiness: Readiness | None,
    variable: str,
) -> MetricsServer | None:
    """Serve ``registry`` and ``readiness`` on a background thread; None when the port is taken
    (logged as ``metrics_port_in_use``, naming the setting ``variable`` that moves it, and the
    workers keep running). The collectors and checks are handed in by
    :mod:`bgworkers.monitoring.endpoints`: this package sits below the ones they read.
    """
    try:
        server = start_metrics_server(registry, host, port, readiness)
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
