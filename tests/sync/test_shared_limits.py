"""Provider limits shared through the database hold across processes, restarts and 429s.

Real PostgreSQL (and SQLite for the single-host store), a fake Notion on a real local HTTP
server that records when each token's requests arrive, and worker groups as separate
processes (``tests/sync/limit_group.py``).
"""

from __future__ import annotations

import collections
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers.db.engine import make_engine
from bgworkers.sync.models import RateLimitSlot
from bgworkers.sync.shared_limits import (
    Limit,
    RateLimitedLater,
    SharedLimiter,
    SlotStore,
    credential_key,
    prune_idle_rows,
)
from tests.sync.fakes import serve_http

ROOT = Path(__file__).resolve().parents[2]
#: What the fake enforces, per token per calendar second (Notion: an average of 3).
LIMIT_PER_S = 3
#: What the limiter is told: under the fake's 3, as bgworkers' default (2.5) is, with room for
#: 0.5 s of scheduling delay between two requests of a token (this test runs on shared CI
#: machines; bench/fairness.py measures the default rate with real worker groups).
RATE_PER_S = 2.0


@dataclass
class CountingNotion:
    """Answers ``POST /v1/search`` like Notion; records each token's arrival times.

    The token ``storm`` gets a 429 with ``Retry-After: 1`` on its first request.
    """

    arrivals: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    refused_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        now = time.time()
        token = request.headers["Authorization"].removeprefix("Bearer ")
        with self.lock:
            self.arrivals[token].append(now)
            if token == "storm" and self.refused_at is None:
                self.refused_at = now
                body = {"object": "error", "status": 429, "code": "rate_limited", "message": "x"}
                return httpx.Response(429, headers={"Retry-After": "1"}, json=body)
        time.sleep(0.03)  # Notion's latency, roughly
        return httpx.Response(200, json={"object": "list", "results": [], "has_more": False})

    def worst_second(self) -> dict[str, int]:
        """Per token, the most requests that arrived within one calendar second."""
        with self.lock:
            return {
                token: max(collections.Counter(int(t) for t in times).values())
                for token, times in self.arrivals.items()
            }


@pytest.fixture
def notion_server() -> Iterator[tuple[CountingNotion, str]]:
    fake = CountingNotion()
    with serve_http(fake) as url:
        yield fake, url


def start_group(
    db_url: str, base_url: str, seconds: float, tokens: list[str]
) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "tests.sync.limit_group",
        db_url,
        base_url,
        str(RATE_PER_S),
        "4",
        str(seconds),
        *tokens,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def sent_by(group: subprocess.Popen[str]) -> int:
    out, _ = group.communicate(timeout=120)
    assert group.returncode == 0
    return int(out.strip().splitlines()[-1])


@pytest.mark.integration
def test_two_groups_and_a_restart_never_exceed_a_tokens_limit(
    postgres_engine: Engine, notion_server: tuple[CountingNotion, str]
) -> None:
    fake, url = notion_server
    db_url = postgres_engine.url.render_as_string(hide_password=False)
    tokens = ["alpha", "beta", "gamma", "storm"]
    first = start_group(db_url, url, 6.0, tokens)
    second = start_group(db_url, url, 6.0, tokens)
    deadline = time.monotonic() + 60
    while sum(len(v) for v in dict(fake.arrivals).values()) < 12:  # both groups under way
        assert time.monotonic() < deadline, "the groups sent nothing"
        time.sleep(0.05)
    second.send_signal(signal.SIGKILL)  # a host lost mid-run: its reserved slots just lapse
    second.wait(timeout=30)
    restarted = start_group(db_url, url, 4.0, tokens)
    assert sent_by(first) > 0 and sent_by(restarted) > 0
    worst = fake.worst_second()
    assert set(worst) == set(tokens)
    assert max(worst.values()) <= LIMIT_PER_S, worst
    # Every token went at close to its rate: 8 s or more of sending at 2/s.
    assert all(len(fake.arrivals[t]) >= 10 for t in tokens), {
        t: len(v) for t, v in fake.arrivals.items()
    }
    # The 429 paused "storm" in every process until the server's time, and only "storm".
    assert fake.refused_at is not None
    after = [t for t in fake.arrivals["storm"] if t > fake.refused_at]
    assert after and min(after) >= fake.refused_at + 1.0 - 0.05


def slot_after(store: SlotStore, limits: list[Limit], key: str) -> float:
    """Reserve, then read the slot that follows for ``key`` (the row's ``next_at``): the
    reserved slot plus one interval, on the database's clock."""
    store.reserve(limits)
    with Session(store.engine) as session:
        row = session.get(RateLimitSlot, key)
        assert row is not None
        return row.next_at


@pytest.mark.parametrize("db_engine", ["sqlite", "postgresql"], indirect=True)
def test_requests_of_one_token_are_spaced_by_the_rate_and_a_pause_holds(
    db_engine: Engine,
) -> None:
    store = SlotStore(db_engine)
    key = credential_key("notion", "secret-token")
    slots = [slot_after(store, [Limit(key, 4.0)], key) for _ in range(5)]
    # Each slot at least 0.25 s after the one before (reserved, not slept): exactly that
    # while requests queue up, more when one came after the previous slot had passed.
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert all(gap >= 0.25 - 1e-6 for gap in gaps), gaps
    assert min(gaps) == pytest.approx(0.25, abs=1e-6)
    other = [Limit(credential_key("notion", "other-token"), 4.0)]
    assert store.reserve(other) == pytest.approx(0.0, abs=0.2)  # tokens do not share
    store.pause(credential_key("notion", "other-token"), 30.0)
    assert store.reserve(other) == pytest.approx(30.0, abs=0.5)


@pytest.mark.parametrize("db_engine", ["sqlite", "postgresql"], indirect=True)
def test_a_global_cap_spaces_requests_of_different_tokens(db_engine: Engine) -> None:
    store = SlotStore(db_engine)
    cap = Limit("notion:all", 10.0)
    tokens = [[Limit(credential_key("notion", f"t{n}"), 3.0), cap] for n in range(4)]
    slots = [slot_after(store, limits, cap.key) for limits in tokens]
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert all(gap >= 0.1 - 1e-6 for gap in gaps), gaps


def test_an_unreachable_store_falls_back_to_a_slow_local_rate_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    slept: list[float] = []
    limiter = SharedLimiter(SlotStore(engine), fallback_share=0.1, sleep=slept.append)
    limits = [Limit("notion:token:x", 5.0)]
    for _ in range(3):
        limiter.acquire(limits)  # never raises: sync goes on
    said = [r for r in caplog.records if "rate_limit_store_unavailable" in r.getMessage()]
    assert len(said) == 1
    # Locally a tenth of the rate, 0.5 requests/s: the three slots 2 s apart, counted from
    # one instant (the injected sleep does not move the clock). The store is asked again
    # after 5 s, not on every request.
    assert slept == pytest.approx([2.0, 4.0], abs=0.1)
    engine.dispose()


def test_an_unreachable_store_hands_a_paused_credential_back_as_the_store_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    slept: list[float] = []
    limiter = SharedLimiter(
        SlotStore(engine), fallback_share=0.5, max_wait_s=5.0, sleep=slept.append
    )
    busy = [Limit("notion:token:busy", 1.0)]
    limiter.acquire(busy)
    limiter.acquire(busy)  # the conservative local spacing (half of 1/s) is still slept
    assert slept == [pytest.approx(2.0, abs=0.1)]
    paused = [Limit("notion:token:paused", 1.0)]
    limiter.acquire(paused)
    limiter.pause(paused[0].key, 3.0)  # a 429 with Retry-After: 3, under max_wait_s
    with pytest.raises(RateLimitedLater) as raised:
        limiter.acquire(paused)
    assert raised.value.retry_after_s == pytest.approx(3.0, abs=0.5)
    with pytest.raises(RateLimitedLater):  # still paused: handed back, reserving nothing
        limiter.acquire(paused)
    assert len(slept) == 1  # no thread slept through the pause
    # ... and so does a calendar page's reservation, which reserves nothing for it either;
    # a page's request that waited for its slot finds the pause as well (paused_keys).
    [refused] = limiter.reserve_many([paused])
    assert refused.paused and refused.wait_s == pytest.approx(3.0, abs=0.5)
    assert list(limiter.paused_keys([paused[0].key, busy[0].key])) == [paused[0].key]
    said = [r for r in caplog.records if "rate_limit_store_unavailable" in r.getMessage()]
    assert len(said) == 1
    engine.dispose()


def test_a_wait_longer_than_a_thread_should_sleep_goes_back_to_the_broker(
    sqlite_engine: Engine,
) -> None:
    slept: list[float] = []
    limiter = SharedLimiter(
        SlotStore(sqlite_engine), fallback_share=0.1, max_wait_s=5.0, sleep=slept.append
    )
    limits = [Limit(credential_key("notion", "paused-token"), 2.5)]
    limiter.pause(limits[0].key, 60.0)  # a 429 with Retry-After: 60, from any process
    with pytest.raises(RateLimitedLater) as raised:
        limiter.acquire(limits)
    assert raised.value.retry_after_s == pytest.approx(60.0, abs=1.0)
    assert slept == []  # no thread slept through it


@pytest.mark.parametrize("db_engine", ["sqlite", "postgresql"], indirect=True)
def test_a_paused_credential_is_handed_back_however_short_the_pause(db_engine: Engine) -> None:
    slept: list[float] = []
    limiter = SharedLimiter(
        SlotStore(db_engine), fallback_share=0.1, max_wait_s=5.0, sleep=slept.append
    )
    busy = [Limit(credential_key("notion", "busy-token"), 2.5)]
    limiter.acquire(busy)
    limiter.acquire(busy)  # the spacing of a busy credential is slept, as before
    assert slept == [pytest.approx(0.4, abs=0.1)]
    paused = [Limit(credential_key("notion", "paused-token"), 2.5)]
    limiter.pause(paused[0].key, 2.0)  # a 429 with Retry-After: 2, under max_wait_s
    with pytest.raises(RateLimitedLater) as raised:
        limiter.acquire(paused)
    assert raised.value.retry_after_s == pytest.approx(2.0, abs=0.5)
    assert len(slept) == 1  # no thread sleeps through a pause


@pytest.mark.parametrize("db_engine", ["sqlite", "postgresql"], indirect=True)
def test_a_paused_credentials_refused_requests_hold_no_other_credential(db_engine: Engine) -> None:
    limiter = SharedLimiter(
        SlotStore(db_engine), fallback_share=0.1, max_wait_s=5.0, sleep=lambda _: None
    )
    project = Limit("google:all", 100.0)
    paused = [Limit("google:user:1", 5.0), project]
    other = [Limit("google:user:2", 5.0), project]
    limiter.acquire(paused)
    limiter.pause(paused[0].key, 60.0)  # a 429 with Retry-After: 60 for user 1
    for _ in range(3):  # its chain's deliveries during the pause, each refused
        with pytest.raises(RateLimitedLater):
            limiter.acquire(paused)
    # Another user of the project goes on at once: the cap was not moved past the pause.
    assert limiter.acquire(other) < 1.0
    with Session(db_engine) as session:
        row = session.get(RateLimitSlot, paused[0].key)
        assert row is not None
        assert row.next_at < row.paused_until  # no slot taken after the pause either


@pytest.mark.parametrize("db_engine", ["sqlite", "postgresql"], indirect=True)
def test_a_paused_credential_in_a_page_reserves_nothing_and_holds_no_other(
    db_engine: Engine,
) -> None:
    limiter = SharedLimiter(
        SlotStore(db_engine), fallback_share=0.1, max_wait_s=5.0, sleep=lambda _: None
    )
    project = Limit("google:all", 100.0)
    paused = [Limit("google:user:1", 5.0), project]
    others = [[Limit(f"google:user:{n}", 5.0), project] for n in (2, 3, 4)]
    limiter.reserve_many([paused])
    limiter.pause(paused[0].key, 60.0)  # a 429 with Retry-After: 60 for user 1
    for other in others:  # pages during the pause, the paused user first in each
        refused, slot = limiter.reserve_many([paused, other])
        assert refused.paused and refused.wait_s == pytest.approx(60.0, abs=1.0)
        # The other user goes on at once: the project's cap was not moved past the pause.
        assert not slot.paused and slot.wait_s < 1.0
    with Session(db_engine) as session:
        own, cap = (
            session.get(RateLimitSlot, paused[0].key),
            session.get(RateLimitSlot, "google:all"),
        )
        assert own is not None and cap is not None
        assert own.next_at < own.paused_until and cap.next_at < own.paused_until


@pytest.mark.parametrize("db_engine", ["sqlite", "postgresql"], indirect=True)
def test_idle_rows_are_pruned_and_a_pruned_credential_is_still_limited(db_engine: Engine) -> None:
    store = SlotStore(db_engine)
    used = Limit(credential_key("notion", "used-token"), 4.0)
    old = Limit(credential_key("notion", "old-token"), 4.0)
    paused = Limit(credential_key("notion", "paused-token"), 4.0)
    for limit in (used, old, paused):
        store.reserve([limit])
    store.pause(paused.key, 3_600.0)  # a pause still running keeps its row
    with Session(db_engine) as session:
        for limit in (old, paused):
            row = session.get(RateLimitSlot, limit.key)
            assert row is not None
            row.next_at -= 40 * 86_400  # last reserved 40 days ago
        session.commit()

    assert prune_idle_rows(db_engine, idle_s=30 * 86_400, batch_size=1) == 1
    with Session(db_engine) as session:
        assert session.get(RateLimitSlot, old.key) is None
        assert session.get(RateLimitSlot, used.key) is not None
        assert session.get(RateLimitSlot, paused.key) is not None
    assert prune_idle_rows(db_engine, idle_s=30 * 86_400) == 0  # a second run finds nothing

    # The store still believes the pruned row exists; its requests are spaced all the same.
    slots = [slot_after(store, [old], old.key) for _ in range(3)]
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert all(gap >= 0.25 - 1e-6 for gap in gaps), gaps
