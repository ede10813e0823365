"""A 429 storm on one Notion token slows only that token: a run whose credential is paused
gives its worker thread back and is sent again for when the pause ends (real RabbitMQ and
PostgreSQL, Notion faked at the HTTP layer and counting each token's requests)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import dramatiq
import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bgworkers.settings import get_settings
from bgworkers.sync import actors
from bgworkers.sync.http import build_client, use_client
from bgworkers.sync.models import NotionConnection
from tests.platform_helpers import wait_for
from tests.sync.fakes import NotionWorkspaces
from tests.sync.helpers import add_user, connect_notion

STORM = "secret_storm"
RETRY_AFTER_S = 2.0


@pytest.fixture
def workspaces() -> Iterator[NotionWorkspaces]:
    settings = get_settings()
    fake = NotionWorkspaces(version=settings.notion_version, retry_after_s=RETRY_AFTER_S)
    use_client(build_client(settings, transport=httpx.MockTransport(fake)))
    yield fake
    use_client(None)


def synced(engine: Engine) -> int:
    with Session(engine) as session:
        done = col(NotionConnection.last_synced_at).is_not(None)
        return int(session.exec(select(func.count()).where(done)).one())


@pytest.mark.integration
def test_a_paused_token_gives_its_thread_to_the_others_and_comes_back_after_the_pause(
    postgres_engine: Engine,
    app_broker: dramatiq.Broker,
    workspaces: NotionWorkspaces,
    registry: CollectorRegistry,
) -> None:
    stormed = add_user(postgres_engine, "storm@example.com")
    connect_notion(postgres_engine, stormed, token=STORM)
    workspaces.add(STORM)
    workspaces.storms[STORM] = 2  # its first two requests: 429, Retry-After: 2
    calm = [f"secret_calm-{n}" for n in range(6)]
    calm_users = [add_user(postgres_engine, f"calm{n}@example.com") for n in range(len(calm))]
    for user_id, token in zip(calm_users, calm, strict=True):
        connect_notion(postgres_engine, user_id, token=token)
        workspaces.add(token)
    # One worker thread: a thread parked on the paused token would hold every other user.
    worker = dramatiq.Worker(app_broker, worker_timeout=100, worker_threads=1)
    actors.sync_user_notion_pages.send(stormed)  # first in the queue
    for user_id in calm_users:
        actors.sync_user_notion_pages.send(user_id)
    worker.start()
    try:
        wait_for(lambda: synced(postgres_engine) == 7, timeout_s=60, what="every user synced")
    finally:
        worker.stop()

    storm = workspaces.requests_of(STORM)
    assert [status for _, status in storm] == [429, 429, 200]
    # The pause was honoured: no request of the paused token before its Retry-After ended.
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(storm)]
    assert all(gap >= RETRY_AFTER_S - 0.05 for gap in gaps), gaps
    # ... and the others did not wait on it: each was served, once, during its first pause.
    for token in calm:
        [(at, status)] = workspaces.requests_of(token)
        assert status == 200 and storm[0][0] < at < storm[1][0], token
    # A pause is no failure: two runs paused, none failed, nothing dead-lettered.
    runs = "bgworkers_sync_runs_total"
    assert registry.get_sample_value(runs, {"provider": "notion", "outcome": "paused"}) == 2
    assert registry.get_sample_value(runs, {"provider": "notion", "outcome": "completed"}) == 7
    assert not registry.get_sample_value(runs, {"provider": "notion", "outcome": "transient_error"})
    assert app_broker.get_queue_message_counts("sync")[2] == 0
