"""A rate-limit storm longer than the fan-out's ticks keeps one chain of re-sends per
connection, and a storm longer than ``BGW_SYNC_MAX_PAUSE_S`` ends it with a recorded reason
(real PostgreSQL and its outbox, Notion faked at the HTTP layer; the ticks and deliveries are
driven by calling the actors' functions, not by waiting for the clock, except where the retry
policy's decision matters: a real worker on the real RabbitMQ then)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta

import dramatiq
import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bgworkers.db.engine import utcnow
from bgworkers.errors import PermanentHTTPError
from bgworkers.outbox.models import OutboxMessage
from bgworkers.settings import get_settings
from bgworkers.sync import actors
from bgworkers.sync.http import build_client, use_client
from bgworkers.sync.models import (
    STATUS_ACTIVE,
    STATUS_PAUSED,
    NotionConnection,
    RateLimitSlot,
)
from bgworkers.sync.pause_chain import leave_paused_to_their_chains, stale_after_s
from bgworkers.users.slots import lock_key
from tests.platform_helpers import wait_for
from tests.sync.fakes import NotionWorkspaces
from tests.sync.helpers import add_user, connect_notion

STORM = "secret_storm"
ACTOR = actors.sync_user_notion_pages.actor_name


@pytest.fixture
def workspaces() -> Iterator[NotionWorkspaces]:
    settings = get_settings()
    # A pause far longer than this test: every delivery of the chain finds it still holding.
    fake = NotionWorkspaces(version=settings.notion_version, retry_after_s=600)
    use_client(build_client(settings, transport=httpx.MockTransport(fake)))
    yield fake
    use_client(None)


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def pending(engine: Engine) -> list[OutboxMessage]:
    """The per-user Notion messages recorded and not yet delivered: the live chains."""
    with Session(engine) as session:
        rows = select(OutboxMessage).where(
            OutboxMessage.actor == ACTOR, col(OutboxMessage.published_at).is_(None)
        )
        return list(session.exec(rows))


def deliver(engine: Engine) -> None:
    """Run every pending per-user message once, as a worker would (delays not waited)."""
    for row in pending(engine):
        with Session(engine) as session:
            stored = session.get(OutboxMessage, row.id)
            assert stored is not None
            stored.published_at = utcnow()
            session.add(stored)
            session.commit()
        envelope = json.loads(row.body)
        actors.sync_user_notion_pages.fn(*envelope["args"], **envelope["kwargs"])


def connection(engine: Engine, user_id: int) -> NotionConnection:
    with Session(engine) as session:
        row = session.exec(select(NotionConnection).where(NotionConnection.user_id == user_id))
        return row.one()


def paused_by_a_one_request_storm_now_over(
    engine: Engine, workspaces: NotionWorkspaces, user_id: int
) -> None:
    """The user's connection is paused by a storm of one refused request, whose pause is
    then over (as its Retry-After ends): the chain's next delivery gets through."""
    connect_notion(engine, user_id, token=STORM)
    workspaces.add(STORM)
    workspaces.storms[STORM] = 1
    actors.sync_notion_pages.fn()
    deliver(engine)
    assert connection(engine, user_id).status == STATUS_PAUSED
    with Session(engine) as session:
        session.execute(update(RateLimitSlot).values(paused_until=0.0, next_at=0.0))
        session.commit()


@pytest.mark.integration
def test_a_storm_longer_than_two_ticks_keeps_one_chain_and_ends_it_after_the_bound(
    postgres_engine: Engine,
    app_broker: dramatiq.Broker,
    workspaces: NotionWorkspaces,
    registry: CollectorRegistry,
    fresh_settings: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user_id = add_user(postgres_engine, "storm@example.com")
    connect_notion(postgres_engine, user_id, token=STORM)
    workspaces.add(STORM)
    workspaces.storms[STORM] = 1_000  # every request refused: a storm with no end in sight

    chains = []
    actors.sync_notion_pages.fn()  # tick 1
    deliver(postgres_engine)  # 429: paused, the chain's re-send recorded
    chains.append(len(pending(postgres_engine)))
    assert connection(postgres_engine, user_id).status == STATUS_PAUSED
    actors.sync_notion_pages.fn()  # tick 2, during the storm
    chains.append(len(pending(postgres_engine)))
    deliver(postgres_engine)  # the chain comes back, finds the pause, re-sends itself
    chains.append(len(pending(postgres_engine)))
    actors.sync_notion_pages.fn()  # tick 3, still during the storm
    chains.append(len(pending(postgres_engine)))
    assert chains == [1, 1, 1, 1]
    actors.sync_user_notion_pages.fn(user_id)  # a message sent before the pause: skipped
    assert len(pending(postgres_engine)) == 1
    [chain] = pending(postgres_engine)
    assert json.loads(chain.body)["args"][1] is not None  # carries when the storm began
    skipped = {"provider": "notion", "event": "tick_skipped"}
    assert registry.get_sample_value("bgworkers_sync_pause_chains_total", skipped) == 2
    # The pause held: the provider saw the first request only.
    assert [status for _, status in workspaces.requests_of(STORM)] == [429]

    # The storm has now lasted longer than the bound: the chain ends, with its reason.
    monkeypatch.setenv("BGW_SYNC_MAX_PAUSE_S", "0.001")
    get_settings.cache_clear()
    deliver(postgres_engine)
    assert pending(postgres_engine) == []
    ended = connection(postgres_engine, user_id)
    assert ended.status == STATUS_ACTIVE
    assert ended.last_error is not None and ended.last_error.startswith("rate limited for")
    given_up = {"provider": "notion", "event": "given_up"}
    assert registry.get_sample_value("bgworkers_sync_pause_chains_total", given_up) == 1
    runs = "bgworkers_sync_runs_total"
    assert registry.get_sample_value(runs, {"provider": "notion", "outcome": "paused"}) == 3

    actors.sync_notion_pages.fn()  # tick 4: the next scheduled sync starts again
    [restarted] = pending(postgres_engine)
    assert json.loads(restarted.body)["args"] == [user_id]


@pytest.mark.integration
def test_a_chain_that_gets_through_sets_its_connection_active_for_the_next_ticks(
    postgres_engine: Engine,
    app_broker: dramatiq.Broker,
    workspaces: NotionWorkspaces,
    registry: CollectorRegistry,
) -> None:
    user_id = add_user(postgres_engine, "short-storm@example.com")
    paused_by_a_one_request_storm_now_over(postgres_engine, workspaces, user_id)
    deliver(postgres_engine)
    synced = connection(postgres_engine, user_id)
    assert synced.status == STATUS_ACTIVE and synced.last_synced_at is not None
    assert pending(postgres_engine) == []
    actors.sync_notion_pages.fn()
    assert len(pending(postgres_engine)) == 1
    runs = "bgworkers_sync_runs_total"
    assert registry.get_sample_value(runs, {"provider": "notion", "outcome": "completed"}) == 1


@pytest.mark.parametrize("db_engine", ["sqlite", "postgresql"], indirect=True)
def test_a_paused_mark_whose_resend_never_came_back_is_taken_back_by_the_fan_out(
    db_engine: Engine, registry: CollectorRegistry
) -> None:
    lost, live = add_user(db_engine, "lost@example.com"), add_user(db_engine, "live@example.com")
    now = utcnow()
    with Session(db_engine) as session:
        for user_id, age_s in ((lost, stale_after_s(60.0) + 1), (live, 30.0)):
            session.add(
                NotionConnection(
                    user_id=user_id,
                    access_token=f"secret_{user_id}",
                    status=STATUS_PAUSED,
                    updated_at=now - timedelta(seconds=age_s),
                )
            )
        session.commit()
        skipped = leave_paused_to_their_chains(
            session, NotionConnection, provider="notion", now=now, max_pause_s=60.0
        )
        session.commit()
    assert skipped == 1
    assert connection(db_engine, lost).status == STATUS_ACTIVE
    assert connection(db_engine, live).status == STATUS_PAUSED
    reclaimed = {"provider": "notion", "event": "reclaimed"}
    assert registry.get_sample_value("bgworkers_sync_pause_chains_total", reclaimed) == 1


@pytest.mark.integration
def test_two_runs_of_one_user_paused_at_once_leave_one_chain(
    postgres_engine: Engine,
    app_broker: dramatiq.Broker,
    registry: CollectorRegistry,
    fresh_settings: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BGW_MAX_CONCURRENT_JOBS_PER_USER", "2")  # two of a user's jobs at once
    get_settings.cache_clear()
    settings = get_settings()
    user_id = add_user(postgres_engine, "twice@example.com")
    connect_notion(postgres_engine, user_id, token=STORM)
    fake = NotionWorkspaces(version=settings.notion_version, retry_after_s=600)
    fake.add(STORM)
    fake.storms[STORM] = 2
    both_in_flight = threading.Barrier(2, timeout=20)

    def answer_both_together(request: httpx.Request) -> httpx.Response:
        both_in_flight.wait()  # the two runs' requests are out before either is refused
        return fake(request)

    use_client(build_client(settings, transport=httpx.MockTransport(answer_both_together)))
    failures: list[BaseException] = []

    def run() -> None:
        try:
            actors.sync_user_notion_pages.fn(user_id)  # e.g. a tick's and a continuation
        except BaseException as exc:  # any failure of a run is reported by the assertion below
            failures.append(exc)

    try:
        runs = [threading.Thread(target=run) for _ in range(2)]
        for thread in runs:
            thread.start()
        for thread in runs:
            thread.join(timeout=60)
    finally:
        use_client(None)
    assert failures == []
    paused = {"provider": "notion", "outcome": "paused"}
    assert registry.get_sample_value("bgworkers_sync_runs_total", paused) == 2
    assert connection(postgres_engine, user_id).status == STATUS_PAUSED
    assert len(pending(postgres_engine)) == 1  # one chain, not one per run that paused


@pytest.mark.integration
def test_a_chain_run_refused_for_good_leaves_its_connection_to_the_next_tick(
    postgres_engine: Engine,
    app_broker: dramatiq.Broker,
    workspaces: NotionWorkspaces,
    registry: CollectorRegistry,
) -> None:
    user_id = add_user(postgres_engine, "refused@example.com")
    paused_by_a_one_request_storm_now_over(postgres_engine, workspaces, user_id)
    workspaces.workspaces[STORM].inject(400, code="validation_error")  # permanent: no retry

    with pytest.raises(PermanentHTTPError):
        deliver(postgres_engine)  # the chain's message is dead-lettered

    refused = connection(postgres_engine, user_id)
    assert refused.last_error is not None and "400" in refused.last_error
    assert refused.status == STATUS_ACTIVE
    actors.sync_notion_pages.fn()  # the next scheduled run tries again, as for any 4xx
    [retried] = pending(postgres_engine)
    assert json.loads(retried.body)["args"] == [user_id]


@pytest.mark.integration
def test_a_chain_message_failing_on_its_last_attempt_leaves_its_connection_to_the_next_tick(
    postgres_engine: Engine,
    app_broker: dramatiq.Broker,
    registry: CollectorRegistry,
    fresh_settings: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BGW_SYNC_HTTP_MAX_ATTEMPTS", "1")  # one request per delivery
    get_settings.cache_clear()
    settings = get_settings()
    chain = actors.sync_user_notion_pages
    monkeypatch.setitem(chain.options, "max_retries", 1)  # two deliveries, the second is final
    monkeypatch.setitem(chain.options, "min_backoff", 500)
    user_id = add_user(postgres_engine, "unlucky@example.com")
    connect_notion(postgres_engine, user_id, token=STORM)
    fake = NotionWorkspaces(version=settings.notion_version, retry_after_s=1)
    fake.add(STORM)
    fake.storms[STORM] = 1  # the tick's run: 429, Retry-After: 1 (the chain starts)
    fake.workspaces[STORM].inject(503, times=2, code="service_unavailable")  # the chain's two
    found: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        found.append(connection(postgres_engine, user_id).status)  # as each request finds it
        return fake(request)

    use_client(build_client(settings, transport=httpx.MockTransport(answer)))
    worker = dramatiq.Worker(app_broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        actors.sync_notion_pages.fn()  # tick 1
        wait_for(
            lambda: app_broker.get_queue_message_counts("sync")[2] == 1,
            timeout_s=30,
            what="the chain's message dead-lettered after its last attempt",
        )
        released = connection(postgres_engine, user_id)
        assert released.status == STATUS_ACTIVE
        assert released.last_error is not None and "503" in released.last_error
        actors.sync_notion_pages.fn()  # tick 2: the connection is sent again, and synced
        wait_for(
            lambda: connection(postgres_engine, user_id).last_synced_at is not None,
            timeout_s=30,
            what="the next tick's sync",
        )
    finally:
        worker.stop()
        use_client(None)
    assert [status for _, status in fake.requests_of(STORM)] == [429, 503, 503, 200]
    # The first failure kept the mark (its retry is the chain): never two chains at once.
    assert found == [STATUS_ACTIVE, STATUS_PAUSED, STATUS_PAUSED, STATUS_ACTIVE]
    failed = {"provider": "notion", "event": "failed"}
    assert registry.get_sample_value("bgworkers_sync_pause_chains_total", failed) == 1


def drop_slot_connection(engine: Engine, user_id: int) -> None:
    """End the PostgreSQL session that holds the user's first job slot (this database's
    only), as a lost connection does, and wait until it is gone."""
    namespace, key = lock_key(user_id, 0)
    holder = text(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = :a AND objid = :b"
        " AND objsubid = 2 AND database = (SELECT oid FROM pg_database"
        " WHERE datname = current_database())"
    )
    with engine.connect() as conn:
        [pid] = conn.execute(holder, {"a": namespace, "b": key}).scalars().all()
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        alive = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
        wait_for(lambda: conn.execute(alive, {"pid": pid}).scalar_one() == 0, what="it ended")


def run_chain_losing_its_slot(
    engine: Engine, broker: dramatiq.Broker, user_id: int, fake: NotionWorkspaces
) -> list[str]:
    """Tick 1, then the chain on a worker until the connection is synced; the chain's first
    link loses its user slot's session after its run committed. The connection's status as
    each request found it."""
    found: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        found.append(connection(engine, user_id).status)
        if len(found) == 2:  # the first link records the next, then cannot release its slot
            drop_slot_connection(engine, user_id)
        return fake(request)

    use_client(build_client(get_settings(), transport=httpx.MockTransport(answer)))
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        actors.sync_notion_pages.fn()  # tick 1
        wait_for(
            lambda: connection(engine, user_id).last_synced_at is not None,
            timeout_s=30,
            what="the chain's next link's sync",
        )
    finally:
        worker.stop()
        use_client(None)
    return found


@pytest.mark.integration
def test_a_chain_message_failing_after_it_recorded_its_next_link_keeps_the_mark(
    postgres_engine: Engine,
    app_broker: dramatiq.Broker,
    registry: CollectorRegistry,
    fresh_settings: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = get_settings()
    monkeypatch.setitem(actors.sync_user_notion_pages.options, "max_retries", 0)  # all final
    user_id = add_user(postgres_engine, "slot-lost@example.com")
    connect_notion(postgres_engine, user_id, token=STORM)
    fake = NotionWorkspaces(version=settings.notion_version, retry_after_s=1)
    fake.add(STORM)
    fake.storms[STORM] = 2  # the tick's run and the chain's first link: 429, Retry-After: 1
    found = run_chain_losing_its_slot(postgres_engine, app_broker, user_id, fake)
    assert [status for _, status in fake.requests_of(STORM)] == [429, 429, 200]
    assert app_broker.get_queue_message_counts("sync")[2] == 1  # the first link failed
    # Its next link was committed before the failure: the mark stayed for it (one chain).
    assert found == [STATUS_ACTIVE, STATUS_PAUSED, STATUS_PAUSED]
    assert connection(postgres_engine, user_id).status == STATUS_ACTIVE
    failed = {"provider": "notion", "event": "failed"}
    assert not registry.get_sample_value("bgworkers_sync_pause_chains_total", failed)


@pytest.mark.integration
def test_a_chain_message_whose_retry_gives_up_after_it_recorded_its_next_link_keeps_the_mark(
    postgres_engine: Engine,
    app_broker: dramatiq.Broker,
    registry: CollectorRegistry,
    fresh_settings: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BGW_SYNC_HTTP_MAX_ATTEMPTS", "1")  # one request per delivery
    # A request every 4 s: a pause of 3 s is shorter than the spacing, so the first link's
    # retry (in 0.1-0.2 s) waits for the pause's end and asks before its next link (in 3 s).
    monkeypatch.setenv("BGW_NOTION_REQUESTS_PER_SECOND", "0.25")
    get_settings.cache_clear()
    settings = get_settings()
    chain = actors.sync_user_notion_pages
    monkeypatch.setitem(chain.options, "max_retries", 1)  # two deliveries, the second is final
    monkeypatch.setitem(chain.options, "min_backoff", 100)
    user_id = add_user(postgres_engine, "committed-then-lost@example.com")
    connect_notion(postgres_engine, user_id, token=STORM)
    fake = NotionWorkspaces(version=settings.notion_version, retry_after_s=3)
    fake.add(STORM)
    fake.storms[STORM] = 2  # the tick's run and the chain's first link: 429, Retry-After: 3
    fake.workspaces[STORM].inject(503, code="service_unavailable")  # the first link's retry
    found = run_chain_losing_its_slot(postgres_engine, app_broker, user_id, fake)
    assert [status for _, status in fake.requests_of(STORM)] == [429, 429, 503, 200]
    assert app_broker.get_queue_message_counts("sync")[2] == 1  # the first link gave up
    # Its first attempt had committed the next link: its giving up left the mark to that
    # link, which found its connection still paused (no tick could start a second chain).
    assert found == [STATUS_ACTIVE, STATUS_PAUSED, STATUS_PAUSED, STATUS_PAUSED]
    assert connection(postgres_engine, user_id).status == STATUS_ACTIVE
    failed = {"provider": "notion", "event": "failed"}
    assert not registry.get_sample_value("bgworkers_sync_pause_chains_total", failed)
