"""The servers ``bench/scale.py`` runs beside the worker group, each in a process of its own.

- an SMTP sink (aiosmtpd) that accepts every email at once and appends one line per email,
  ``<unix time> <recipient>``, to a file, so the benchmark can time every delivery;
- a fake Google Calendar ``events.list`` over real HTTP/1.1 (keep-alive): it answers after a
  configurable latency with a few events per user (the user is named by the bearer token),
  a ``nextSyncToken``, and with one changed event on an incremental listing; every
  ``throttle_every``-th request is refused with ``429`` and ``Retry-After``.

Separate processes, so their CPU is not the worker group's and not the benchmark's.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

EVENTS_PER_USER = 3


def run_smtp_sink(port: int, log_path: str, ready: Any) -> None:
    """Child process: accept every email, record when and for whom."""
    import logging

    from aiosmtpd.controller import Controller

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # one INFO line per command
    out = Path(log_path).open("a", buffering=1)  # noqa: SIM115 - lives as long as the process

    class Recording:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            out.write(f"{time.time():.6f} {envelope.rcpt_tos[0]}\n")
            return "250 OK"

    controller = Controller(Recording(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


def _event(user: str, n: int, changed: bool) -> dict[str, Any]:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=n + 1)
    return {
        "kind": "calendar#event",
        "id": f"{user}-ev{n}",
        "status": "confirmed",
        "summary": f"{'Moved' if changed else 'Meeting'} {n}",
        "updated": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "start": {"dateTime": start.isoformat()},
        "end": {"dateTime": (start + timedelta(minutes=30)).isoformat()},
    }


def run_fake_google(port: int, latency_s: float, throttle_every: int, ready: Any) -> None:
    """Child process: Google Calendar ``events.list`` for any number of users."""
    counter = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            return None

        def do_GET(self) -> None:
            with lock:
                counter[0] += 1
                throttled = throttle_every > 0 and counter[0] % throttle_every == 0
            time.sleep(latency_s)
            if throttled:
                error = {"error": {"code": 429, "message": "Rate Limit Exceeded"}}
                self._answer(429, error, {"Retry-After": "1"})
                return
            user = self.headers.get("Authorization", "").removeprefix("Bearer ")
            incremental = "syncToken" in parse_qs(urlparse(self.path).query)
            items = (
                [_event(user, 0, True)]
                if incremental
                else [_event(user, n, False) for n in range(EVENTS_PER_USER)]
            )
            body = {"kind": "calendar#events", "items": items, "nextSyncToken": f"s{time.time()}"}
            self._answer(200, body, {})

        def _answer(self, status: int, body: Any, headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    ready.set()
    server.serve_forever()


def start(target: Any, *args: Any) -> multiprocessing.process.BaseProcess:
    """Start ``target(*args, ready)`` in a spawned process and wait until it serves."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=target, args=(*args, ready), daemon=True)
    process.start()
    if not ready.wait(30):
        raise SystemExit(f"{target.__name__} did not start within 30 s")
    return process
