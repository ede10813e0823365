"""Benchmark: time and peak memory to sync 10,000 Google Calendar events.

A fake events.list server (in-process, through ``httpx.MockTransport``) pages like Google,
250 events per page, and ends with a ``nextSyncToken``. The sync runs into a fresh, migrated
SQLite database (or ``--database-url``). Three figures are printed for each scenario: wall
time, peak Python heap allocated during the run (tracemalloc, measured in a separate run
because tracing slows Python down) and the process's maximum RSS.

Usage: ``python bench/sync_calendar.py [--events 10000] [--database-url URL]``
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from _isolation import quiet_logs
from sqlalchemy import event, func, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers import migrations
from bgworkers.db.engine import make_engine
from bgworkers.settings import load_settings
from bgworkers.sync.google_calendar import sync_calendar
from bgworkers.sync.http import RequestRetryPolicy, build_client
from bgworkers.sync.models import CalendarConnection, CalendarEvent
from bgworkers.users.models import User

START = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


class PagedCalendar:
    """Google-shaped pages over ``count`` events; ``changed`` events differ in round two."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.round = 1
        self.changed = 0

    def event(self, n: int) -> dict[str, Any]:
        start = START + timedelta(minutes=30 * n)
        title = f"Event {n}" if self.round == 1 or n >= self.changed else f"Moved {n}"
        return {
            "kind": "calendar#event",
            "id": f"ev{n:06d}",
            "status": "confirmed",
            "summary": title,
            "updated": "2026-11-01T00:00:00.000Z",
            "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        size = int(params.get("maxResults", "250"))
        offset = int(params.get("pageToken", "0"))
        total = self.changed if "syncToken" in params else self.count
        items = [self.event(n) for n in range(offset, min(offset + size, total))]
        body: dict[str, Any] = {"kind": "calendar#events", "items": items}
        if offset + size < total:
            body["nextPageToken"] = str(offset + size)
        else:
            body["nextSyncToken"] = f"sync-round-{self.round}"
        return httpx.Response(200, json=body)


def measure(label: str, run: Callable[[], Any], setup: Callable[[], None]) -> None:
    setup()
    started = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - started
    setup()
    tracemalloc.start()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{label:<34} {elapsed:8.2f} s  {result.upserted / elapsed:9.0f} events/s  "
        f"pages {result.pages:3d}  peak heap {peak / 2**20:7.1f} MiB  max RSS {rss_mib:7.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=1_000, help="events changed in round two")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    quiet_logs()

    directory = tempfile.mkdtemp(prefix="bench-sync-")
    url = args.database_url or f"sqlite:///{directory}/bench.db"
    with _scratch_engine(url) as engine:
        _bench(engine, args)


@contextmanager
def _scratch_engine(url: str) -> Iterator[Engine]:
    """A migrated engine; on PostgreSQL in a throwaway schema, dropped afterwards."""
    engine = make_engine(url)
    schema = None
    if engine.dialect.name == "postgresql":
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))

        @event.listens_for(engine, "connect")
        def _search_path(dbapi_connection: Any, _: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f'SET search_path TO "{schema}"')
            dbapi_connection.commit()

        engine.dispose()
    try:
        migrations.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        if schema is not None:
            admin = make_engine(url)
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def _bench(engine: Engine, args: argparse.Namespace) -> None:
    settings = load_settings()
    fake = PagedCalendar(args.events)
    client = build_client(settings, transport=httpx.MockTransport(fake))
    policy = RequestRetryPolicy()
    with Session(engine) as session:
        user = User(email=f"bench-{time.time_ns()}@example.com")
        session.add(user)
        session.commit()
        assert user.id is not None
        user_id = user.id
        session.add(CalendarConnection(user_id=user_id, access_token="a", refresh_token="r"))
        session.commit()

    def reset(*, full: bool) -> Callable[[], None]:
        def setup() -> None:
            with Session(engine) as session:
                conn = session.exec(
                    select(CalendarConnection).where(CalendarConnection.user_id == user_id)
                ).one()
                conn.sync_token = None if full else "sync-round-1"
                conn.page_token = None
                session.add(conn)
                session.commit()

        return setup

    def run() -> Any:
        with Session(engine, expire_on_commit=False) as session:
            return sync_calendar(
                session=session,
                user_id=user_id,
                client=client,
                settings=settings,
                now=datetime.now(UTC),
                policy=policy,
            )

    print(f"database: {engine.dialect.name}; {args.events} events, 250 per page")
    measure("full sync into empty table", run, _then(_clear(engine, user_id), reset(full=True)))
    measure("full resync, all rows present", run, reset(full=True))
    fake.round, fake.changed = 2, args.changed
    measure(f"incremental, {args.changed} changed", run, reset(full=False))
    with Session(engine) as session:
        stored = session.exec(
            select(func.count()).select_from(CalendarEvent).where(CalendarEvent.user_id == user_id)
        ).one()
    print(f"rows stored: {stored}")
    client.close()


def _clear(engine: Any, user_id: int) -> Callable[[], None]:
    def clear() -> None:
        with Session(engine) as session:
            for event in session.exec(
                select(CalendarEvent).where(CalendarEvent.user_id == user_id)
            ):
                session.delete(event)
            session.commit()

    return clear


def _then(*steps: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        for step in steps:
            step()

    return run


if __name__ == "__main__":
    main()
