"""The servers ``bench/scale.py`` runs beside the worker group, each in a process of its own.

- an SMTP sink (aiosmtpd) that accepts every email at once and appends one line per email,
  ``<unix time> <recipient>``, to a file, so the benchmark can time every delivery;
- a fake Google Calendar ``events.list`` over real HTTP/1.1 (keep-alive, asyncio): it answers
  after a configurable latency with a few events per user (the user is named by the token),
  a ``nextSyncToken``, and with one changed event on an incremental listing; on the same port,
  Notion's ``POST /v1/search`` with a few pages per token; every ``throttle_every``-th request
  is refused with ``429`` and ``Retry-After``;
- a fake paged API (:func:`run_fake_paged_api`, ``bench/fairness.py``): Google ``events.list``
  with many pages for the calendars named ``heavy-*``, Notion's search with a number of pages
  per token, one token refused with 429 at first, and every Notion request's arrival written
  to a file, ``<unix time> <token>``, so a benchmark can count each token's requests per
  second;
- a fake Notion with a rate-limit storm (:func:`run_fake_notion_storm`, ``bench/fairness.py``):
  tokens of one prefix refused with 429 and a long ``Retry-After`` for a stretch, every
  request's arrival and answer written to a file;
- :class:`WorkerGroups`: ``dramatiq bgworkers`` groups started with a benchmark's
  environment, each with its own data directory and metrics port, all stopped together.

Separate processes, so their CPU is not the worker group's and not the benchmark's.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

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
    """Child process: Google Calendar ``events.list`` for any number of users.

    One asyncio loop over raw HTTP/1.1 (keep-alive): the latency is a timer, not a thread
    per request, so the fake's own ceiling (thousands of requests per second) stays well
    above what the worker group is asked to reach; a threaded ``http.server`` topped out
    near 200 requests/s here.
    """
    import asyncio

    counter = [0]

    async def answer(target: str, headers: dict[str, str], body: bytes) -> bytes:
        counter[0] += 1
        throttled = throttle_every > 0 and counter[0] % throttle_every == 0
        await asyncio.sleep(latency_s)
        reply = _notion_answer if target.startswith("/v1/") else _google_answer
        return reply(target, headers, throttled)

    _serve_forever(answer, port, ready)


def _serve_forever(answer: Any, port: int, ready: Any) -> None:
    """Serve HTTP/1.1 keep-alive connections on 127.0.0.1:``port`` until killed, each request
    answered by ``await answer(target, headers, body)`` (the whole response, bytes);
    ``ready`` is set once it listens."""
    import asyncio

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target, headers = _parse_head(head)
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                writer.write(await answer(target, headers, body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed its connection
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The request target and the lower-cased headers of an HTTP/1.1 request head."""
    lines = head.decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1] if " " in lines[0] else "/"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return target, headers


def _google_answer(target: str, headers: dict[str, str], throttled: bool) -> bytes:
    """The whole HTTP response: a 429 with ``Retry-After``, or a page of events."""
    if throttled:
        error = {"error": {"code": 429, "message": "Rate Limit Exceeded"}}
        return _response(429, "Too Many Requests", error, "Retry-After: 1\r\n")
    user = headers.get("authorization", "").removeprefix("Bearer ")
    incremental = "syncToken" in parse_qs(urlparse(target).query)
    items = (
        [_event(user, 0, True)]
        if incremental
        else [_event(user, n, False) for n in range(EVENTS_PER_USER)]
    )
    body = {"kind": "calendar#events", "items": items, "nextSyncToken": f"s{time.time()}"}
    return _response(200, "OK", body, "")


def _notion_answer(target: str, headers: dict[str, str], throttled: bool) -> bytes:
    """Notion's ``POST /v1/search``: one page of a few pages per token (no more results)."""
    if throttled:
        error = {"object": "error", "status": 429, "code": "rate_limited", "message": "Slow down"}
        return _response(429, "Too Many Requests", error, "Retry-After: 1\r\n")
    user = headers.get("authorization", "").removeprefix("Bearer ")
    edited = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    results = [
        {
            "object": "page",
            "id": f"{user}-page{n}",
            "last_edited_time": edited,
            "url": f"https://www.notion.so/{user}-page{n}",
            "properties": {"title": {"type": "title", "title": [{"plain_text": f"Notes {n}"}]}},
        }
        for n in range(EVENTS_PER_USER)
    ]
    body = {"object": "list", "results": results, "has_more": False, "next_cursor": None}
    return _response(200, "OK", body, "")


def _response(status: int, reason: str, body: Any, extra_headers: str) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n{extra_headers}\r\n"
    )
    return head.encode() + data


def run_fake_paged_api(
    port: int,
    latency_s: float,
    heavy_pages: int,
    notion_pages: int,
    storm_token: str,
    storm_429s: int,
    arrivals_path: str,
    ready: Any,
) -> None:
    """Child process: paged Google and Notion listings, one asyncio loop (see the module).

    Google: calendar ``heavy-*`` has ``heavy_pages`` pages of one event, any other one page.
    Notion: ``notion_pages`` pages of one page object per token (``start_cursor`` is the page
    number); ``storm_token``'s first ``storm_429s`` requests get ``429`` with
    ``Retry-After: 1``. Every Notion request is appended to ``arrivals_path`` when it
    arrives, before the latency.
    """
    import asyncio

    arrivals = Path(arrivals_path).open("a", buffering=1)  # noqa: SIM115 - the process's life
    refused = [0]

    async def answer(target: str, headers: dict[str, str], body: bytes) -> bytes:
        if target.startswith("/v1/"):
            token = headers.get("authorization", "").removeprefix("Bearer ")
            arrivals.write(f"{time.time():.6f} {token}\n")
            if token == storm_token and refused[0] < storm_429s:
                refused[0] += 1
                return _notion_answer(target, headers, True)
            await asyncio.sleep(latency_s)
            return _notion_paged_answer(token, body, notion_pages)
        await asyncio.sleep(latency_s)
        return _google_paged_answer(target, heavy_pages)

    _serve_forever(answer, port, ready)


def run_fake_notion_storm(
    port: int,
    latency_s: float,
    storm_prefix: str,
    storm_s: float,
    retry_after_s: float,
    arrivals_path: str,
    ready: Any,
) -> None:
    """Child process: Notion's search, one page object per token, with a rate-limit storm.

    A token starting with ``storm_prefix`` is answered ``429`` with ``Retry-After:
    retry_after_s`` for ``storm_s`` seconds from its first request, then normally. Every
    request is appended to ``arrivals_path`` when it arrives, ``<unix time> <token> <status>``
    (see :func:`read_storm_arrivals`), so a benchmark can draw each token's timeline.
    """
    import asyncio

    arrivals = Path(arrivals_path).open("a", buffering=1)  # noqa: SIM115 - the process's life
    first_seen: dict[str, float] = {}
    refusal = {"object": "error", "status": 429, "code": "rate_limited", "message": "Slow down"}
    retry_after = f"Retry-After: {retry_after_s:g}\r\n"

    async def answer(target: str, headers: dict[str, str], body: bytes) -> bytes:
        token = headers.get("authorization", "").removeprefix("Bearer ")
        now = time.time()
        began = first_seen.setdefault(token, now)
        if token.startswith(storm_prefix) and now - began < storm_s:
            arrivals.write(f"{now:.6f} {token} 429\n")
            return _response(429, "Too Many Requests", refusal, retry_after)
        arrivals.write(f"{now:.6f} {token} 200\n")
        await asyncio.sleep(latency_s)
        return _notion_paged_answer(token, body, 1)

    _serve_forever(answer, port, ready)


def read_storm_arrivals(path: Path) -> list[tuple[float, str, int]]:
    """``(unix time, token, status)`` of every request :func:`run_fake_notion_storm` saw."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            at, token, status = line.split(" ")
            rows.append((float(at), token, int(status)))
    return rows


def _google_paged_answer(target: str, heavy_pages: int) -> bytes:
    url = urlparse(target)
    parts = url.path.split("/")
    calendar = unquote(parts[parts.index("calendars") + 1]) if "calendars" in parts else ""
    page = int(parse_qs(url.query).get("pageToken", ["0"])[0])
    pages = heavy_pages if calendar.startswith("heavy-") else 1
    event = _event(calendar, page, False)
    event["id"] = f"{calendar}-{page}"
    body: dict[str, Any] = {"kind": "calendar#events", "items": [event]}
    if page + 1 < pages:
        body["nextPageToken"] = str(page + 1)
    else:
        body["nextSyncToken"] = "synced"
    return _response(200, "OK", body, "")


def _notion_paged_answer(token: str, body: bytes, pages: int) -> bytes:
    cursor = json.loads(body or b"{}").get("start_cursor")
    page_number = int(cursor or 0)
    page = {
        "object": "page",
        "id": f"page-{token}-{page_number}",
        "url": f"https://www.notion.so/{token}",
        "last_edited_time": "2026-11-20T10:00:00.000Z",
        "properties": {"title": {"type": "title", "title": [{"plain_text": token}]}},
    }
    more = page_number + 1 < pages
    answer = {
        "object": "list",
        "results": [page],
        "next_cursor": str(page_number + 1) if more else None,
        "has_more": more,
    }
    return _response(200, "OK", answer, "")


def read_arrivals(path: Path) -> dict[str, list[float]]:
    """The arrival times of each token's requests, from :func:`run_fake_paged_api`'s file."""
    arrivals: dict[str, list[float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            at, _, token = line.partition(" ")
            if token:
                arrivals.setdefault(token, []).append(float(at))
    return arrivals


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class WorkerGroups:
    """``dramatiq bgworkers`` groups with ``env``; each gets a data directory and a metrics
    port of its own under ``workdir`` (its log: ``group-N.log``)."""

    env: dict[str, str]
    workdir: Path
    running: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *queues: str, processes: int = 1, threads: int = 8) -> None:
        n = len(self.running)
        env = {
            **self.env,
            "BGW_DATA_DIR": str(self.workdir / f"group-{n}"),
            "BGW_METRICS_PORT": str(free_port()),
        }
        command = [sys.executable, "-m", "dramatiq", "bgworkers", "-p", str(processes)]
        command += ["-t", str(threads)] + (["-Q", *queues] if queues else [])
        log = (self.workdir / f"group-{n}.log").open("wb")
        self.running.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
        log.close()  # the child has its own copy

    def stop(self) -> None:
        for group in self.running:
            group.terminate()
        for group in self.running:
            try:
                group.wait(timeout=30)
            except subprocess.TimeoutExpired:
                group.kill()
        self.running.clear()


def start(target: Any, *args: Any) -> multiprocessing.process.BaseProcess:
    """Start ``target(*args, ready)`` in a spawned process and wait until it serves."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=target, args=(*args, ready), daemon=True)
    process.start()
    if not ready.wait(30):
        raise SystemExit(f"{target.__name__} did not start within 30 s")
    return process
