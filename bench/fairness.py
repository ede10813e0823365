"""Benchmark: urgent work behind bulk, heavy users beside ordinary ones, provider limits.

Four parts, each against real worker groups (``dramatiq bgworkers`` processes), a vhost of
its own (``bench-fair-<random>``, deleted at the end) and a PostgreSQL schema of its own
(dropped at the end); nothing outside them is messaged, queued or purged.

1. ``lanes``: N bulk emails are queued through ``enqueue_email`` (the outbox) before the
   worker group starts, as after an outage; the group's relay publishes them and its workers
   drain them, and R reminders fall due with the backlog draining and the reminder check
   ticks. With ``--summaries S``, S users' daily summaries come first (their tick, the worker
   group, their emails flowing), the bulk emails are queued behind them (the group paused
   meanwhile), and the reminders fall due with both in flight.
   Figure: for each reminder, the seconds from its due time to the SMTP server (aiosmtpd, a
   child process) accepting its email; and how many bulk emails were still waiting when the
   last reminder email left.
2. ``share``: ordinary Google Calendar users (one page each) alone, then with heavy users
   (many pages each) ahead of them in the same hourly tick (``--share-via tick``: the tick's
   calendar pages, as in production; ``user``: one message per user), against a fake API
   answering each request after a fixed latency. Figure: time until every ordinary user is
   synced, with and without the heavy users (the ratio), and until the heavy users finish.
3. ``notion``: C Notion connections (P pages each: P requests of one token in a row) at a
   fixed latency, by one worker group and then by two; one token answers its first requests
   with 429 and ``Retry-After: 1``.
   Figure: time to sync them all but the 429'd token (its own time is printed apart: its
   retry waits out ``Retry-After`` and would cap the two-group time), and the most requests
   of any token within one second at the fake server (Notion allows an average of 3).
   ``--notion-order one,two,two,one`` interleaves rounds (times averaged per side);
   ``--notion-threads``/``--notion-processes`` size each group.
4. ``storm``: does a 429 storm on some tokens slow the others? Rounds without and with a
   storm, interleaved (calm, storm, storm, calm): ``--storm-tokens`` tokens are refused with
   429 and ``Retry-After: --retry-after-s`` for ``--storm-s`` seconds, by a fake Notion that
   records every request's time, token and status. Figure: the other tokens' sync time with
   and without the storm (the ratio), their requests per second at the server while a storm
   token was paused against a calm round's, and a storm token's timeline. The group is sized
   to be bound by threads and latency (``--storm-threads 4``, ``--storm-latency-ms 200``):
   a thread parked on a paused token costs no CPU, so a CPU-bound group would hide it.

Run::

    BGW_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/ \\
    BGW_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres \\
        python bench/fairness.py [--parts lanes,share,notion,storm] [--bulk 5000] ...

The SMTP sink, the fake APIs and the worker groups are ``bench/_scale_servers.py``'s, each
in a process of its own. The ``notion`` part also prints the CPU each side used (worker
groups, this database's PostgreSQL backends, RabbitMQ as a whole, the fake API, the
benchmark) and how busy the whole machine was, to tell what limits the speed-up.

It ends with ``name=value`` lines.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import math
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _scale_servers as servers
from _scale_servers import WorkerGroups, free_port
from sqlalchemy import create_engine, text
from stack_overhead import cpu_seconds, group_pids, own_vhost

BENCH_DIR = Path(__file__).resolve().parent
POSTGRES_URL = os.environ.get(
    "BGW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
FIGURES: dict[str, str] = {}
#: The token whose first requests the fake Notion refuses with 429.
STORM_TOKEN = "storm"


def figure(name: str, value: float | int | str) -> None:
    FIGURES[name] = f"{value:.2f}" if isinstance(value, float) else str(value)


@contextmanager
def own_schema() -> Iterator[str]:
    """A PostgreSQL schema of the run's own (random name), dropped at the end."""
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


def wait_for(
    condition: Callable[[], bool], *, timeout_s: float, what: str, every_s: float = 0.05
) -> float:
    """Poll ``condition`` every ``every_s``; return the monotonic time it held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/fairness.py: {what} did not happen within {timeout_s:g} s")
        time.sleep(every_s)
    return time.monotonic()


def wait_for_consumers(vhost_url: str, queue: str, count: int, *, exactly: bool = False) -> None:
    """Wait until ``queue`` has ``count`` consumers or more (``exactly``: just ``count``; 0
    after stopping groups, so the next round's count is not the stopped groups' still)."""
    from bgworkers.monitoring.queue_depth import management_url_for, read_depths_management

    api = management_url_for(vhost_url, os.environ.get("BGW_RABBITMQ_MANAGEMENT_URL"))
    assert api is not None

    def ready() -> bool:
        [depth] = read_depths_management(api, vhost_url, [queue])
        consumers = depth.consumers or 0
        return consumers == count if exactly else consumers >= count

    wait_for(ready, timeout_s=120, what=f"{count} consumer(s) of {queue}")


@contextmanager
def fake_api(args: argparse.Namespace, latency_s: float, arrivals: Path) -> Iterator[None]:
    """The fake paged API on ``args.api_port`` for the block, at ``latency_s`` per request."""
    process = servers.start(
        servers.run_fake_paged_api,
        args.api_port,
        latency_s,
        args.heavy_pages,
        args.notion_pages,
        STORM_TOKEN,
        3,
        str(arrivals),
    )
    args.api_pid = process.pid
    try:
        yield
    finally:
        process.terminate()
        process.join(10)


# --- part 1: lanes -------------------------------------------------------------------------


def read_sink(path: Path) -> dict[str, float]:
    """When the SMTP sink accepted each recipient's email (``<unix time> <recipient>`` lines)."""
    if not path.exists():
        return {}
    rows = (line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)
    return {recipient: float(at) for at, recipient in rows}


def is_bulk(recipient: str) -> bool:
    """Everything but the reminder emails (``rem<n>@``): notices and daily summaries."""
    return not recipient.startswith("rem")


def add_summary_users(count: int) -> None:
    """``count`` users whose daily summary is due now (their zone's clock is 08:00-12:00)."""
    from scale import summary_zone
    from sqlmodel import Session

    from bgworkers.db.engine import get_engine
    from bgworkers.users.models import User

    zone = summary_zone(datetime.now(UTC))
    with Session(get_engine()) as session:
        for first in range(0, count, 1000):
            session.add_all(
                User(email=f"sum{n}@example.org", display_name=f"User {n}", timezone=zone)
                for n in range(first, min(first + 1000, count))
            )
            session.commit()


def part_lanes(
    args: argparse.Namespace, groups: WorkerGroups, vhost_url: str, record: Path
) -> None:
    from sqlmodel import Session

    from bgworkers.db.engine import get_engine, session_scope
    from bgworkers.email.api import enqueue_email
    from bgworkers.reminders.actors import check_due_reminders
    from bgworkers.reminders.models import Reminder
    from bgworkers.users.models import User

    def queue_bulk() -> None:
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

    def flowing(prefix: str, count: int) -> Callable[[], bool]:
        return lambda: sum(1 for r in read_sink(record) if r.startswith(prefix)) >= count

    if args.summaries:
        # The daily summaries' tick comes first (the other way round, their pages would wait
        # behind the whole backlog on the email queue) and their emails flow; the group stops
        # while the bulk backlog is queued (queued beside a running group, on this machine,
        # it took longer than the summaries took to send), then starts again: summary pages
        # ahead, the bulk backlog behind them, and reminders fall due with both in flight.
        add_summary_users(args.summaries)
        groups.start(threads=8)  # every queue: the default deployment
        from bgworkers.reminders.actors import send_daily_email_summary

        send_daily_email_summary.send()  # the quarter hour's tick
        first_summaries = min(50, args.summaries)
        wait_for(flowing("sum", first_summaries), timeout_s=600, what="summary emails flowing")
        groups.stop()
        queue_bulk()
        sent_before = sum(1 for r in read_sink(record) if r.startswith("sum"))
        groups.start(threads=8)
        more = min(sent_before + 50, args.summaries)
        wait_for(flowing("sum", more), timeout_s=600, what="summary emails flowing again")
    else:
        # The workers start on a full outbox, as after an SMTP or worker outage: the relay
        # publishes the backlog, the group drains it, and then reminders fall due.
        queue_bulk()
        groups.start(threads=8)
        wait_for(flowing("user", min(50, args.bulk)), timeout_s=300, what="bulk email flowing")
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
        return sum(1 for r in read_sink(record) if not is_bulk(r)) >= wanted

    wait_for(all_reminders_sent, timeout_s=600, what="every reminder email")
    sent = read_sink(record)
    latencies = sorted(at - due.timestamp() for r, at in sent.items() if not is_bulk(r))
    bulk_sent = sum(1 for r in sent if r.startswith("user"))
    summaries_sent = sum(1 for r in sent if r.startswith("sum"))
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"lanes: {args.reminders} reminders: due -> SMTP p50 {p50:.2f} s, p99 {p99:.2f} s, "
        f"max {latencies[-1]:.2f} s; {args.bulk - bulk_sent} bulk emails and "
        f"{args.summaries - summaries_sent} of {args.summaries} daily summaries still waiting then"
    )
    figure("reminder_latency_p50_s", p50)
    figure("reminder_latency_p99_s", p99)
    figure("bulk_waiting_when_reminders_done", args.bulk - bulk_sent)
    figure("summaries_waiting_when_reminders_done", args.summaries - summaries_sent)
    groups.stop()


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


def sync_round(ordinary: list[int], heavy: list[int], *, via: str) -> tuple[float, float]:
    """Heavy users first, then the ordinary; seconds until each set is synced.

    ``via="tick"``: the hourly tick (``sync_calendar_events``), which sends them in pages of
    users by id (the heavy ones were added first) as in production; only this round's
    connections are active (:func:`retire_connections` after each round). ``via="user"``:
    one ``sync_user_calendar`` message per user, as before calendar pages existed."""
    from bgworkers.sync.actors import sync_calendar_events, sync_user_calendar

    started = time.monotonic()
    if via == "tick":
        sync_calendar_events.send()
    else:
        for user_id in [*heavy, *ordinary]:
            sync_user_calendar.send(user_id)
    done = wait_for(lambda: synced(ordinary) == len(ordinary), timeout_s=900, what="ordinary")
    heavy_done = wait_for(lambda: synced(heavy) == len(heavy), timeout_s=1800, what="heavy")
    retire_connections([*ordinary, *heavy])
    return done - started, heavy_done - started


def retire_connections(ids: list[int]) -> None:
    """Take a round's users out of the next tick's fan-out (their connection deleted)."""
    from sqlmodel import Session, col, delete

    from bgworkers.db.engine import get_engine
    from bgworkers.sync.models import CalendarConnection

    with Session(get_engine()) as session:
        session.exec(delete(CalendarConnection).where(col(CalendarConnection.user_id).in_(ids)))
        session.commit()


def part_share(args: argparse.Namespace, groups: WorkerGroups, vhost_url: str) -> None:
    groups.start("sync", threads=8)
    wait_for_consumers(vhost_url, "sync", 1)
    alone, _ = sync_round(add_calendar_users(args.ordinary, "plain"), [], via=args.share_via)
    heavy = add_calendar_users(args.heavy, "heavy")
    ordinary = add_calendar_users(args.ordinary, "other")
    beside, heavy_s = sync_round(ordinary, heavy, via=args.share_via)
    print(
        f"share (via {args.share_via}): {args.ordinary} ordinary users alone {alone:.1f} s; "
        f"beside {args.heavy} heavy "
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


def notion_round(ids: list[int], *, stormed: int | None = None) -> float:
    """Seconds until every connection but ``stormed`` (the 429'd one) is synced; that one's
    own time is printed. Why apart: its retry waits out ``Retry-After`` and the message's
    backoff, seconds that say nothing of the group's speed and would cap it in the ratio."""
    from bgworkers.sync.actors import sync_user_notion_pages

    started = time.monotonic()
    for user_id in ids:
        sync_user_notion_pages.send(user_id)
    others = [i for i in ids if i != stormed]
    # Polled every 0.25 s: a count query every 50 ms took a tenth of a core from the two the
    # worker groups share (the timing's resolution stays far below the seconds measured).
    done = wait_for(
        lambda: notion_synced(others) == len(others),
        timeout_s=900,
        what="notion sync",
        every_s=0.25,
    )
    if stormed is not None:
        storm_done = wait_for(
            lambda: notion_synced([stormed]) == 1, timeout_s=900, what="the 429'd token's sync"
        )
        print(f"notion: the 429'd token synced after {storm_done - started:.1f} s")
    return done - started


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (``/proc/stat``)."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / hz, sum(fields) / hz


def postgres_backends(database_url: str) -> list[int]:
    """PostgreSQL's server processes serving ``database_url``'s database on this host (their
    title is ``postgres: ... <database> <client>``); empty when the server is elsewhere."""
    from sqlalchemy.engine import make_url

    database = f" {make_url(database_url).database} "
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if title.startswith("postgres: ") and database in title:
                    pids.append(int(entry.name))
    return pids


def rabbitmq_nodes() -> list[int]:
    """RabbitMQ's Erlang VMs on this host (shared by every vhost: a whole-broker figure)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "beam.smp":
                    pids.append(int(entry.name))
    return pids


class CpuWatch:
    """CPU each side used over a span, in cores (CPU seconds per second of the span)."""

    def __init__(self, sides: dict[str, Callable[[], list[int]]]) -> None:
        self.sides = sides
        self.started = time.monotonic()
        self.before = {side: self._per_pid(pids()) for side, pids in sides.items()}
        self.machine_before = machine_busy_s()

    @staticmethod
    def _per_pid(pids: list[int]) -> dict[int, float]:
        return {pid: cpu_seconds([pid]) for pid in pids}

    def cores(self) -> tuple[dict[str, float], float, float]:
        """Cores used by each side, the whole machine's busy share, and the span's seconds."""
        span = time.monotonic() - self.started
        used = {}
        for side, pids in self.sides.items():
            now = self._per_pid(sorted(set(pids()) | set(self.before[side])))
            used[side] = sum(t - self.before[side].get(p, 0.0) for p, t in now.items()) / span
        busy, total = machine_busy_s()
        machine = (busy - self.machine_before[0]) / (total - self.machine_before[1])
        return used, machine, span


def worst_second(arrivals: dict[str, list[float]]) -> int:
    """The most requests any token sent within one calendar second."""
    counts = [max(Counter(int(t) for t in times).values()) for times in arrivals.values()]
    return max(counts, default=0)


def tightest_gap(arrivals: dict[str, list[float]], *, skip: str = "") -> float:
    """The shortest time between two requests of one token (``skip`` left out: the 429'd
    token's refused requests are the server's, not our limiter's); inf when none repeats."""
    gaps = [
        b - a
        for token, times in arrivals.items()
        if token != skip
        for a, b in itertools.pairwise(sorted(times))
    ]
    return min(gaps, default=math.inf)


def part_notion(
    args: argparse.Namespace, groups: WorkerGroups, vhost_url: str, arrivals: Path
) -> None:
    per_round: dict[str, list[float]] = {"one": [], "two": []}
    storm_sent = False
    for index, name in enumerate(args.notion_order.split(",")):
        count = {"one": 1, "two": 2}[name]
        for _ in range(count):
            groups.start("sync", processes=args.notion_processes, threads=args.notion_threads)
        wait_for_consumers(vhost_url, "sync", count)
        stormy = count == 2 and not storm_sent  # the first two-group round has the 429 token
        storm_sent = storm_sent or stormy
        prefix = STORM_TOKEN if stormy else f"n{index}"
        ids = add_notion_users(args.connections, prefix)
        workers = [p for group in groups.running for p in group_pids(group.pid)]
        watch = CpuWatch(
            {
                "workers": functools.partial(list, workers),
                "postgres": lambda: postgres_backends(os.environ["BGW_DATABASE_URL"]),
                "rabbitmq_all_vhosts": rabbitmq_nodes,
                "fake_api": lambda: [args.api_pid],
                "bench": lambda: [os.getpid()],
            }
        )
        took = notion_round(ids, stormed=ids[0] if stormy else None)
        per_round[name].append(took)
        cores, machine, span = watch.cores()
        print(
            f"notion: {name} group(s): {took:.1f} s; CPU in cores: "
            + ", ".join(f"{side} {used:.2f}" for side, used in cores.items())
            + f"; machine busy {machine:.0%} of {os.cpu_count()} cores"
        )
        per_connection = {
            side: cores[side] * span * 1000 / args.connections for side in ("workers", "postgres")
        }
        print(
            f"notion: {name} group(s): CPU per connection: workers "
            f"{per_connection['workers']:.1f} ms, PostgreSQL {per_connection['postgres']:.1f} ms"
        )
        figure(f"notion_{name}_worker_cpu_ms_per_connection", per_connection["workers"])
        figure(f"notion_{name}_postgres_cpu_ms_per_connection", per_connection["postgres"])
        figure(f"notion_{name}_workers_cores", cores["workers"])
        figure(f"notion_{name}_machine_busy", machine)
        groups.stop()
        wait_for_consumers(vhost_url, "sync", 0, exactly=True)
    timings = {name: sum(took) / len(took) for name, took in per_round.items()}
    seen = servers.read_arrivals(arrivals)
    storm = seen.get(STORM_TOKEN, [])
    print(
        f"notion: {args.connections} connections x {args.notion_pages} pages at "
        f"{args.latency_ms:g} ms: one group "
        f"{timings['one']:.1f} s, two groups {timings['two']:.1f} s "
        f"(x{timings['one'] / timings['two']:.2f}); most requests of a token in one second: "
        f"{worst_second(seen)}; the 429 token: {len(storm)} requests (3 refused) over "
        f"{max(storm, default=0) - min(storm, default=0):.1f} s"
    )
    figure("notion_one_group_s", timings["one"])
    figure("notion_two_groups_s", timings["two"])
    figure("notion_speedup", timings["one"] / timings["two"])
    figure("notion_max_requests_per_token_second", worst_second(seen))
    gap = tightest_gap(seen, skip=STORM_TOKEN)
    print(
        f"notion: the shortest gap between two requests of one token: {gap:.3f} s "
        f"(BGW_NOTION_REQUESTS_PER_SECOND {os.environ.get('BGW_NOTION_REQUESTS_PER_SECOND', '2.5')}"
        " allows no less than its inverse)"
    )
    figure("notion_tightest_token_gap_s", gap)


# --- part 4: a 429 storm on some tokens --------------------------------------------------------

#: The prefix of the tokens the storm's fake Notion refuses (``run_fake_notion_storm``).
GALE = "gale"


def add_round_users(count: int, prefix: str, stormy: int) -> tuple[list[int], list[int]]:
    """``count`` Notion users, the first ``stormy`` of them with a token of the storm
    (``gale...``); returns (every id, the storm's ids)."""
    from sqlmodel import Session

    from bgworkers.db.engine import get_engine
    from bgworkers.sync.models import NotionConnection
    from bgworkers.users.models import User

    with Session(get_engine()) as session:
        users = [User(email=f"{prefix}{n}@example.org") for n in range(count)]
        session.add_all(users)
        session.flush()
        ids = [u.id for u in users if u.id is not None]
        for n, user_id in enumerate(ids):
            token = f"{GALE}-{prefix}-{n}" if n < stormy else f"{prefix}-{n}"
            session.add(NotionConnection(user_id=user_id, access_token=token))
        session.commit()
    return ids, ids[:stormy]


def storm_round(ids: list[int], stormy: list[int]) -> tuple[float, float, float, float]:
    """Send every user (the storm's first); return (unix start, seconds until every other
    user is synced, seconds until the storm's users are too, unix end of the others)."""
    from bgworkers.sync.actors import sync_user_notion_pages

    wall, started = time.time(), time.monotonic()
    for user_id in ids:
        sync_user_notion_pages.send(user_id)
    others = [i for i in ids if i not in set(stormy)]
    done = wait_for(
        lambda: notion_synced(others) == len(others), timeout_s=900, what="others", every_s=0.25
    )
    others_end = time.time()
    storm_done = wait_for(
        lambda: notion_synced(stormy) == len(stormy), timeout_s=900, what="storm", every_s=0.25
    )
    return wall, done - started, storm_done - started, others_end


def paused_spans(rows: list[tuple[float, str, int]]) -> list[tuple[float, float]]:
    """Per storm token, each span from a 429 to that token's next request."""
    by_token: dict[str, list[tuple[float, int]]] = {}
    for at, token, status in rows:
        if token.startswith(GALE):
            by_token.setdefault(token, []).append((at, status))
    spans = []
    for seen in by_token.values():
        seen.sort()
        for (at, status), (after, _) in itertools.pairwise(seen):
            if status == 429:
                spans.append((at, after))
    return spans


def merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """``spans`` with overlapping ones joined (several storm tokens paused at once)."""
    joined: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end))
        else:
            joined.append((start, end))
    return joined


def others_rate(rows: list[tuple[float, str, int]], start: float, end: float) -> float:
    """Requests per second of the tokens outside the storm between ``start`` and ``end``."""
    count = sum(1 for at, token, _ in rows if start <= at < end and not token.startswith(GALE))
    return count / (end - start) if end > start else 0.0


def timeline(rows: list[tuple[float, str, int]], start: float, token: str) -> str:
    """``status@seconds`` of each request of ``token``, from ``start``."""
    return " ".join(f"{s}@{at - start:.1f}" for at, t, s in sorted(rows) if t == token)


def part_storm(
    args: argparse.Namespace, groups: WorkerGroups, vhost_url: str, workdir: Path
) -> None:
    """Other tokens' sync time with and without a storm on ``--storm-tokens`` tokens, rounds
    interleaved (calm, storm, storm, calm, ...) so a drift of the machine's load hits both.

    Sized so the group is bound by its threads and the API's latency, not by CPU: a thread
    parked on a paused token is then a thread's worth of throughput the others lose, and the
    ratio shows it (a CPU-bound group would hide it: a sleeping thread costs no CPU).
    """
    arrivals = workdir / "storm-arrivals.log"
    process = servers.start(
        servers.run_fake_notion_storm,
        args.api_port,
        args.storm_latency_ms / 1000,
        GALE,
        args.storm_s,
        args.retry_after_s,
        str(arrivals),
    )
    try:
        groups.start("sync", threads=args.storm_threads)
        wait_for_consumers(vhost_url, "sync", 1)
        workers = [p for group in groups.running for p in group_pids(group.pid)]
        results: dict[str, list[float]] = {"calm": [], "storm": []}
        rounds = []
        for pair in range(args.storm_pairs):
            order = ("calm", "storm") if pair % 2 == 0 else ("storm", "calm")
            for kind in order:
                stormy = args.storm_tokens if kind == "storm" else 0
                ids, storm_ids = add_round_users(args.storm_connections, f"{kind}{pair}r", stormy)
                watch = CpuWatch({"workers": functools.partial(list, workers)})
                wall, others_s, storm_s, others_end = storm_round(ids, storm_ids)
                cores, machine, _ = watch.cores()
                results[kind].append(others_s)
                rounds.append((kind, pair, wall, others_end, storm_ids))
                print(
                    f"storm: round {pair} {kind}: others synced in {others_s:.1f} s"
                    + (f", the storm's users after {storm_s:.1f} s" if storm_ids else "")
                    + f"; workers {cores['workers']:.2f} cores, machine busy {machine:.0%}"
                )
    finally:
        groups.stop()
        process.terminate()
        process.join(10)
    rows = servers.read_storm_arrivals(arrivals)
    spans = paused_spans(rows)
    paused: list[tuple[float, float]] = []  # (others' requests, seconds) per paused stretch
    calm_rates = []
    for kind, pair, wall, others_end, _storm_ids in rounds:
        if kind == "calm":
            calm_rates.append(others_rate(rows, wall, others_end))
            continue
        clipped = [(max(a, wall), min(b, others_end)) for a, b in spans]
        for a, b in merged([(a, b) for a, b in clipped if a < b]):
            paused.append((others_rate(rows, a, b) * (b - a), b - a))
        first = next(t for _, t, _ in sorted(rows) if t.startswith(f"{GALE}-storm{pair}r"))
        print(f"storm: round {pair} timeline of {first}: {timeline(rows, wall, first)}")
    calm, storm = (
        sum(results["calm"]) / len(results["calm"]),
        sum(results["storm"]) / len(results["storm"]),
    )
    # Pooled: every paused stretch of the storm rounds (until the others were done) together.
    paused_rate = sum(n for n, _ in paused) / max(sum(t for _, t in paused), 1e-9)
    refused = sum(1 for _, token, status in rows if status == 429 and token.startswith(GALE))
    print(
        f"storm: {args.storm_connections} connections, {args.storm_tokens} in a storm of "
        f"{args.storm_s:g} s (429, Retry-After {args.retry_after_s:g} s), "
        f"{args.storm_latency_ms:g} ms latency, -t {args.storm_threads}: others synced in "
        f"{storm:.1f} s with the storm, {calm:.1f} s without (x{storm / calm:.2f}); "
        f"{refused} requests refused; the others' requests/s while a storm token was paused: "
        f"{paused_rate:.1f} (without a storm: "
        f"{sum(calm_rates) / max(len(calm_rates), 1):.1f})"
    )
    figure("storm_others_calm_s", calm)
    figure("storm_others_storm_s", storm)
    figure("storm_others_slowdown_ratio", storm / calm)
    figure("storm_others_rate_while_paused", paused_rate)
    figure("storm_others_rate_calm", sum(calm_rates) / max(len(calm_rates), 1))


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="lanes,share,notion")
    parser.add_argument("--bulk", type=int, default=5_000, help="bulk emails queued")
    parser.add_argument("--reminders", type=int, default=100)
    parser.add_argument(
        "--summaries", type=int, default=0, help="users whose daily summary is in flight"
    )
    parser.add_argument("--ordinary", type=int, default=300, help="ordinary calendar users")
    parser.add_argument("--heavy", type=int, default=10, help="heavy calendar users")
    parser.add_argument("--heavy-pages", type=int, default=60)
    parser.add_argument("--page-latency-ms", type=float, default=200)
    parser.add_argument(
        "--share-via", choices=("tick", "user"), default="tick", help="how users are sent"
    )
    parser.add_argument("--slice-s", type=float, default=2.0, help="BGW_SYNC_TIME_SLICE_S")
    parser.add_argument("--connections", type=int, default=1_000, help="Notion connections")
    parser.add_argument("--latency-ms", type=float, default=30, help="Notion latency")
    parser.add_argument("--notion-pages", type=int, default=1, help="pages per connection")
    parser.add_argument("--notion-threads", type=int, default=8, help="-t of each group")
    parser.add_argument("--notion-processes", type=int, default=1, help="-p of each group")
    parser.add_argument(
        "--notion-order",
        default="one,two",
        help="rounds of one or two groups, e.g. one,two,two,one",
    )
    parser.add_argument("--storm-connections", type=int, default=200)
    parser.add_argument("--storm-tokens", type=int, default=1, help="tokens in the 429 storm")
    parser.add_argument("--storm-s", type=float, default=30, help="the storm's length")
    parser.add_argument("--retry-after-s", type=float, default=5, help="the storm's Retry-After")
    parser.add_argument("--storm-latency-ms", type=float, default=200)
    parser.add_argument("--storm-threads", type=int, default=4)
    parser.add_argument("--storm-pairs", type=int, default=2, help="calm/storm round pairs")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    broker_url = os.environ.get("BGW_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
    smtp_port, args.api_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{args.api_port}"
    with contextlib.ExitStack() as stack:
        vhost_url = stack.enter_context(own_vhost(broker_url, "bench-fair"))
        database_url = stack.enter_context(own_schema())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-fair-")))
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

        import bgworkers
        from bgworkers import migrations
        from bgworkers.db.engine import get_engine

        quiet_logs()
        migrations.upgrade(get_engine())
        stack.callback(bgworkers.broker.close)
        stack.callback(get_engine().dispose)
        record = workdir / "smtp.log"
        record.touch()
        smtp = servers.start(servers.run_smtp_sink, smtp_port, str(record))
        stack.callback(smtp.terminate)
        groups = WorkerGroups(env, workdir)
        stack.callback(groups.stop)
        arrivals = workdir / "notion-arrivals.log"
        if "lanes" in parts:
            part_lanes(args, groups, vhost_url, record)
        if "share" in parts:
            with fake_api(args, args.page_latency_ms / 1000, arrivals):
                part_share(args, groups, vhost_url)
        if "notion" in parts:
            with fake_api(args, args.latency_ms / 1000, arrivals):
                part_notion(args, groups, vhost_url, arrivals)
        if "storm" in parts:
            part_storm(args, groups, vhost_url, workdir)
    for name, value in FIGURES.items():
        print(f"{name}={value}")


if __name__ == "__main__":
    main()
