"""Benchmark: urgent work behind bulk, heavy users beside ordinary ones, provider limits.

Three parts, each against real worker groups (``dramatiq bgworkers`` processes), a vhost of
its own (``bench-fair-<random>``, deleted at the end) and a PostgreSQL schema of its own
(dropped at the end); nothing outside them is messaged, queued or purged.

1. ``lanes``: N bulk emails are queued through ``enqueue_email`` (the outbox) before the
   worker group starts, as after an outage; the group's relay publishes them and its workers
   drain them; with the backlog draining, R reminders fall due and the reminder check ticks.
   Figure: for each reminder, the seconds from its due time to the SMTP server (aiosmtpd, a
   child process) accepting its email; and how many bulk emails were still waiting when the
   last reminder email left.
2. ``share``: ordinary Google Calendar users (one page each) alone, then with heavy users
   (many pages each) queued ahead of them, against a fake API answering each request after a
   fixed latency. Figure: time until every ordinary user is synced, with and without the heavy
   users (the ratio), and until the heavy users finish too.
3. ``notion``: C Notion connections (P pages each: P requests of one token in a row) at a
   fixed latency, by one worker group and then by two; one token answers its first requests
   with 429 and ``Retry-After: 1``.
   Figure: time to sync them all, and the most requests of any token within one second at the
   fake server (Notion allows an average of 3).

Run::

    BGW_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/ \\
    BGW_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres \\
        python bench/fairness.py [--parts lanes,share,notion] [--bulk 5000] [--reminders 100]

It ends with ``name=value`` lines.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse, urlunparse

from sqlalchemy import create_engine, text

BENCH_DIR = Path(__file__).resolve().parent
POSTGRES_URL = os.environ.get(
    "BGW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
FIGURES: dict[str, str] = {}


def figure(name: str, value: float | int | str) -> None:
    FIGURES[name] = f"{value:.2f}" if isinstance(value, float) else str(value)


# --- isolation: a vhost and a schema of the benchmark's own ---------------------------------


def _management(broker_url: str, method: str, path: str, body: Any = None) -> None:
    parsed = urlparse(broker_url)
    user, password = unquote(parsed.username or "guest"), unquote(parsed.password or "guest")
    base = os.environ.get("BGW_RABBITMQ_MANAGEMENT_URL") or f"http://{parsed.hostname}:15672"
    request = urllib.request.Request(
        base.rstrip("/") + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
        },
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


@contextmanager
def own_vhost(broker_url: str) -> Iterator[str]:
    name = f"bench-fair-{uuid.uuid4().hex[:8]}"
    user = unquote(urlparse(broker_url).username or "guest")
    path = f"/api/vhosts/{quote(name, safe='')}"
    _management(broker_url, "PUT", path, {})
    everything = {"configure": ".*", "write": ".*", "read": ".*"}
    _management(broker_url, "PUT", f"/api/permissions/{quote(name, safe='')}/{user}", everything)
    try:
        yield urlunparse(urlparse(broker_url)._replace(path="/" + quote(name, safe="")))
    finally:
        _management(broker_url, "DELETE", path)
        print(f"bench_vhost={name} (deleted)")


@contextmanager
def own_schema() -> Iterator[str]:
    schema = f"bench_fair_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
        print(f"bench_schema={schema} (dropped)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- worker groups -------------------------------------------------------------------------


@dataclass
class Groups:
    """Starts ``dramatiq bgworkers`` groups with the benchmark's environment; stops them all."""

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
        log = open(self.workdir / f"group-{n}.log", "wb")  # noqa: SIM115 - closed with the process
        self.running.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))

    def stop(self) -> None:
        for group in self.running:
            group.terminate()
        for group in self.running:
            try:
                group.wait(timeout=30)
            except subprocess.TimeoutExpired:
                group.kill()
        self.running.clear()


def wait_for(condition: Callable[[], bool], *, timeout_s: float, what: str) -> float:
    """Poll ``condition`` every 50 ms; return the monotonic time it held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/fairness.py: {what} did not happen within {timeout_s:g} s")
        time.sleep(0.05)
    return time.monotonic()


def wait_for_consumers(vhost_url: str, queue: str, count: int) -> None:
    from bgworkers.monitoring.queue_depth import management_url_for, read_depths_management

    api = management_url_for(vhost_url, os.environ.get("BGW_RABBITMQ_MANAGEMENT_URL"))
    assert api is not None

    def ready() -> bool:
        [depth] = read_depths_management(api, vhost_url, [queue])
        return (depth.consumers or 0) >= count

    wait_for(ready, timeout_s=120, what=f"{count} consumer(s) of {queue}")


# --- part 1: lanes -------------------------------------------------------------------------


def run_smtp_server(port: int, record: str) -> None:
    """Child process: aiosmtpd writing ``subject<TAB>time`` for every accepted email."""
    import asyncio

    from aiosmtpd.controller import Controller

    out = open(record, "a", buffering=1)  # noqa: SIM115 - open for the child's life

    class Recording:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            for line in envelope.content.decode("utf-8", "replace").splitlines():
                if line.startswith("Subject: "):
                    out.write(f"{line[9:]}\t{time.time()}\n")
                    break
            return "250 OK"

    controller = Controller(Recording(), hostname="127.0.0.1", port=port)
    controller.start()
    asyncio.run(asyncio.sleep(10**6))


def read_record(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    rows = (line.split("\t") for line in path.read_text().splitlines() if "\t" in line)
    return {subject: float(at) for subject, at in rows}


def part_lanes(args: argparse.Namespace, groups: Groups, vhost_url: str, record: Path) -> None:
    from sqlmodel import Session

    from bgworkers.db.engine import get_engine, session_scope
    from bgworkers.email.api import enqueue_email
    from bgworkers.reminders.actors import check_due_reminders
    from bgworkers.reminders.models import Reminder
    from bgworkers.users.models import User

    started = time.monotonic()
    for first in range(0, args.bulk, 1000):
        with session_scope() as session:
            for n in range(first, min(first + 1000, args.bulk)):
                enqueue_email(
                    session=session,
                    recipient=f"user{n}@example.org",
                    subject=f"notice {n}",
                    text="A notice to every user.\n",
                    idempotency_key=f"notice:{n}",
                )
    print(f"lanes: {args.bulk} bulk emails queued in {time.monotonic() - started:.1f} s")
    # The workers start on a full outbox, as after an SMTP or worker outage: the relay
    # publishes the backlog, the group drains it, and then reminders fall due.
    groups.start(threads=8)  # every queue: the default deployment
    flowing = min(50, args.bulk)
    wait_for(lambda: len(read_record(record)) >= flowing, timeout_s=300, what="bulk email flowing")
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    with Session(get_engine()) as session:
        users = [User(email=f"rem{n}@example.org") for n in range(args.reminders)]
        session.add_all(users)
        session.flush()
        for n, user in enumerate(users):
            assert user.id is not None
            session.add(
                Reminder(
                    user_id=user.id,
                    text=f"reminder {n}",
                    timezone="UTC",
                    due_at=due,
                    next_due_at=due,
                )
            )
        session.commit()
    time.sleep(max((due - datetime.now(UTC)).total_seconds(), 0))
    check_due_reminders.send()  # the minute's tick
    wanted: int = args.reminders

    def all_reminders_sent() -> bool:
        return sum(1 for s in read_record(record) if not s.startswith("notice")) >= wanted

    wait_for(all_reminders_sent, timeout_s=600, what="every reminder email")
    sent = read_record(record)
    latencies = sorted(at - due.timestamp() for s, at in sent.items() if not s.startswith("notice"))
    bulk_sent = sum(1 for s in sent if s.startswith("notice"))
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"lanes: {args.reminders} reminders: due -> SMTP p50 {p50:.2f} s, p99 {p99:.2f} s, "
        f"max {latencies[-1]:.2f} s; {args.bulk - bulk_sent} bulk emails still waiting then"
    )
    figure("reminder_latency_p50_s", p50)
    figure("reminder_latency_p99_s", p99)
    figure("bulk_waiting_when_reminders_done", args.bulk - bulk_sent)
    groups.stop()


# --- fake providers --------------------------------------------------------------------------


@dataclass
class FakeProviders:
    """Google events.list and Notion search over real HTTP, with a latency per request.

    Google: calendar ``heavy-N`` has ``heavy_pages`` pages, any other one page. Notion: one
    page per token; the token ``storm`` answers its first ``storm_429s`` requests with 429.
    Notion arrivals are recorded per token and second.
    """

    latency_s: float
    heavy_pages: int = 1
    notion_pages: int = 1
    storm_429s: int = 0
    arrivals: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        if path.startswith("/v1/search"):
            cursor = json.loads(body or b"{}").get("start_cursor")
            return self._notion(headers, int(cursor or 0))
        return self._google(path)

    def _google(self, path: str) -> tuple[int, dict[str, Any]]:
        time.sleep(self.latency_s)
        url = urlparse(path)
        parts = url.path.split("/")
        calendar = unquote(parts[parts.index("calendars") + 1])
        page = int(parse_qs(url.query).get("pageToken", ["0"])[0])
        pages = self.heavy_pages if calendar.startswith("heavy-") else 1
        item = {
            "id": f"{calendar}-{page}",
            "status": "confirmed",
            "summary": "Meeting",
            "updated": "2026-11-20T10:00:00Z",
            "start": {"dateTime": "2026-11-21T10:00:00Z"},
            "end": {"dateTime": "2026-11-21T11:00:00Z"},
        }
        body: dict[str, Any] = {"kind": "calendar#events", "items": [item]}
        if page + 1 < pages:
            body["nextPageToken"] = str(page + 1)
        else:
            body["nextSyncToken"] = "synced"
        return 200, body

    def _notion(self, headers: Any, page_number: int) -> tuple[int, dict[str, Any]]:
        token = str(headers.get("Authorization", "")).removeprefix("Bearer ")
        with self.lock:
            self.arrivals[token].append(time.time())
            if token == "storm" and self.refused < self.storm_429s:
                self.refused += 1
                return 429, {"object": "error", "status": 429, "code": "rate_limited"}
        time.sleep(self.latency_s)
        page = {
            "object": "page",
            "id": f"page-{token}-{page_number}",
            "url": f"https://www.notion.so/{token}",
            "last_edited_time": "2026-11-20T10:00:00.000Z",
            "properties": {"title": {"type": "title", "title": [{"plain_text": token}]}},
        }
        more = page_number + 1 < self.notion_pages
        return 200, {
            "object": "list",
            "results": [page],
            "next_cursor": str(page_number + 1) if more else None,
            "has_more": more,
        }

    def worst_second(self) -> int:
        with self.lock:
            counts = [
                max(collections.Counter(int(t) for t in times).values())
                for times in self.arrivals.values()
            ]
        return max(counts, default=0)


@contextmanager
def serve(fake: FakeProviders) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, payload = fake.answer(self.path, self.headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- part 2: fair share ----------------------------------------------------------------------


def add_calendar_users(count: int, prefix: str) -> list[int]:
    from sqlmodel import Session

    from bgworkers.db.engine import get_engine
    from bgworkers.sync.models import CalendarConnection
    from bgworkers.users.models import User

    with Session(get_engine()) as session:
        users = [User(email=f"{prefix}{n}@example.org") for n in range(count)]
        session.add_all(users)
        session.flush()
        ids = [u.id for u in users if u.id is not None]
        for n, user_id in enumerate(ids):
            session.add(
                CalendarConnection(
                    user_id=user_id,
                    calendar_id=f"{prefix}-{n}",
                    access_token=f"access-{prefix}-{n}",
                    refresh_token="refresh",
                )
            )
        session.commit()
    return ids


def synced(ids: list[int]) -> int:
    from sqlalchemy import func
    from sqlmodel import Session, col, select

    from bgworkers.db.engine import get_engine
    from bgworkers.sync.models import CalendarConnection

    with Session(get_engine()) as session:
        return int(
            session.exec(
                select(func.count()).where(
                    col(CalendarConnection.user_id).in_(ids),
                    col(CalendarConnection.last_synced_at).is_not(None),
                )
            ).one()
        )


def sync_round(ordinary: list[int], heavy: list[int]) -> tuple[float, float]:
    """Send heavy users first, then the ordinary; seconds until each set is synced."""
    from bgworkers.sync.actors import sync_user_calendar

    started = time.monotonic()
    for user_id in [*heavy, *ordinary]:
        sync_user_calendar.send(user_id)
    done = wait_for(lambda: synced(ordinary) == len(ordinary), timeout_s=900, what="ordinary")
    heavy_done = wait_for(lambda: synced(heavy) == len(heavy), timeout_s=1800, what="heavy")
    return done - started, heavy_done - started


def part_share(args: argparse.Namespace, groups: Groups, vhost_url: str) -> None:
    groups.start("sync", threads=8)
    wait_for_consumers(vhost_url, "sync", 1)
    alone, _ = sync_round(add_calendar_users(args.ordinary, "plain"), [])
    heavy = add_calendar_users(args.heavy, "heavy")
    beside, heavy_s = sync_round(add_calendar_users(args.ordinary, "other"), heavy)
    print(
        f"share: {args.ordinary} ordinary users alone {alone:.1f} s; beside {args.heavy} heavy "
        f"users ({args.heavy_pages} pages each) {beside:.1f} s (x{beside / alone:.2f}); "
        f"heavy users done after {heavy_s:.1f} s"
    )
    figure("ordinary_alone_s", alone)
    figure("ordinary_beside_heavy_s", beside)
    figure("ordinary_slowdown_ratio", beside / alone)
    figure("heavy_done_s", heavy_s)
    groups.stop()


# --- part 3: Notion ----------------------------------------------------------------------------


def add_notion_users(count: int, prefix: str) -> list[int]:
    from sqlmodel import Session

    from bgworkers.db.engine import get_engine
    from bgworkers.sync.models import NotionConnection
    from bgworkers.users.models import User

    with Session(get_engine()) as session:
        users = [User(email=f"{prefix}{n}@example.org") for n in range(count)]
        session.add_all(users)
        session.flush()
        for n, user in enumerate(users):
            assert user.id is not None
            token = "storm" if n == 0 and prefix == "storm" else f"{prefix}-{n}"
            session.add(NotionConnection(user_id=user.id, access_token=token))
        session.commit()
        return [u.id for u in users if u.id is not None]


def notion_synced(ids: list[int]) -> int:
    from sqlalchemy import func
    from sqlmodel import Session, col, select

    from bgworkers.db.engine import get_engine
    from bgworkers.sync.models import NotionConnection

    with Session(get_engine()) as session:
        return int(
            session.exec(
                select(func.count()).where(
                    col(NotionConnection.user_id).in_(ids),
                    col(NotionConnection.last_synced_at).is_not(None),
                )
            ).one()
        )


def notion_round(ids: list[int]) -> float:
    from bgworkers.sync.actors import sync_user_notion_pages

    started = time.monotonic()
    for user_id in ids:
        sync_user_notion_pages.send(user_id)
    done = wait_for(lambda: notion_synced(ids) == len(ids), timeout_s=900, what="notion sync")
    return done - started


def part_notion(
    args: argparse.Namespace, groups: Groups, vhost_url: str, fake: FakeProviders
) -> None:
    timings = {}
    for count, name in ((1, "one"), (2, "two")):
        for _ in range(count):
            groups.start("sync", threads=8)
        wait_for_consumers(vhost_url, "sync", count)
        prefix = "storm" if count == 2 else f"n{count}"
        timings[name] = notion_round(add_notion_users(args.connections, prefix))
        groups.stop()
    storm = fake.arrivals.get("storm", [])
    print(
        f"notion: {args.connections} connections x {args.notion_pages} pages at "
        f"{args.latency_ms:g} ms: one group "
        f"{timings['one']:.1f} s, two groups {timings['two']:.1f} s "
        f"(x{timings['one'] / timings['two']:.2f}); most requests of a token in one second: "
        f"{fake.worst_second()}; the 429 token: {fake.refused} refusals, "
        f"{len(storm)} requests over {max(storm, default=0) - min(storm, default=0):.1f} s"
    )
    figure("notion_one_group_s", timings["one"])
    figure("notion_two_groups_s", timings["two"])
    figure("notion_speedup", timings["one"] / timings["two"])
    figure("notion_max_requests_per_token_second", fake.worst_second())


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="lanes,share,notion")
    parser.add_argument("--bulk", type=int, default=5_000, help="bulk emails queued")
    parser.add_argument("--reminders", type=int, default=100)
    parser.add_argument("--ordinary", type=int, default=300, help="ordinary calendar users")
    parser.add_argument("--heavy", type=int, default=10, help="heavy calendar users")
    parser.add_argument("--heavy-pages", type=int, default=60)
    parser.add_argument("--page-latency-ms", type=float, default=200)
    parser.add_argument("--slice-s", type=float, default=2.0, help="BGW_SYNC_TIME_SLICE_S")
    parser.add_argument("--connections", type=int, default=1_000, help="Notion connections")
    parser.add_argument("--latency-ms", type=float, default=30, help="Notion latency")
    parser.add_argument("--notion-pages", type=int, default=1, help="pages per connection")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    broker_url = os.environ.get("BGW_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
    smtp_port = free_port()
    fake = FakeProviders(
        latency_s=args.latency_ms / 1000,
        heavy_pages=args.heavy_pages,
        notion_pages=args.notion_pages,
        storm_429s=3,
    )
    with (
        own_vhost(broker_url) as vhost_url,
        own_schema() as database_url,
        tempfile.TemporaryDirectory() as tmp,
        serve(fake) as api_url,
    ):
        workdir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BGW_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            BGW_BROKER_URL=vhost_url,
            BGW_DATABASE_URL=database_url,
            BGW_DATA_DIR=str(workdir / "bench"),
            BGW_LOG_LEVEL="WARNING",
            BGW_SMTP_HOST="127.0.0.1",
            BGW_SMTP_PORT=str(smtp_port),
            BGW_EMAIL_FROM="bench@example.org",
            BGW_NOTION_API_BASE_URL=api_url,
            BGW_GOOGLE_API_BASE_URL=api_url + "/calendar/v3",
            BGW_SYNC_TIME_SLICE_S=str(args.slice_s),
            BGW_METRICS_HOST="127.0.0.1",
        )
        os.environ.update(env)  # this process sends with the same settings
        sys.path.insert(0, str(BENCH_DIR))
        from _isolation import quiet_logs

        from bgworkers import migrations
        from bgworkers.db.engine import get_engine

        quiet_logs()
        migrations.upgrade(get_engine())
        groups = Groups(env, workdir)
        record = workdir / "smtp.tsv"
        import multiprocessing

        smtp = multiprocessing.Process(
            target=run_smtp_server, args=(smtp_port, str(record)), daemon=True
        )
        smtp.start()
        try:
            if "lanes" in parts:
                part_lanes(args, groups, vhost_url, record)
            if "share" in parts:
                fake.latency_s = args.page_latency_ms / 1000
                part_share(args, groups, vhost_url)
            if "notion" in parts:
                fake.latency_s = args.latency_ms / 1000
                part_notion(args, groups, vhost_url, fake)
        finally:
            groups.stop()
            smtp.terminate()
            get_engine().dispose()
            import bgworkers

            bgworkers.broker.close()
    for name, value in FIGURES.items():
        print(f"{name}={value}")


if __name__ == "__main__":
    main()
