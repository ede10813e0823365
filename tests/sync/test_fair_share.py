"""Fair share per user: long syncs yield their thread, and one user's jobs are capped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dramatiq
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.outbox.models import OutboxMessage
from bgworkers.settings import get_settings
from bgworkers.sync import actors
from bgworkers.sync.http import build_client, use_client
from bgworkers.sync.models import NotionConnection, NotionPage
from bgworkers.users.slots import user_slot
from tests.sync.fakes import FakeNotion
from tests.sync.helpers import add_user, connect_notion

TOKEN = "secret_notion-heavy"
EDITED = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture
def notion(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNotion]:
    monkeypatch.setenv("BGW_SYNC_TIME_SLICE_S", "0.001")  # yields after every page
    monkeypatch.setenv("BGW_MAX_CONCURRENT_JOBS_PER_USER", "1")
    get_settings.cache_clear()
    settings = get_settings()
    fake = FakeNotion(token=TOKEN, version=settings.notion_version)
    for n in range(250):  # three pages of results
        fake.put_page(f"Page {n}", edited=EDITED - timedelta(minutes=n))
    use_client(build_client(settings, transport=httpx.MockTransport(fake)))
    yield fake
    use_client(None)
    monkeypatch.undo()
    get_settings.cache_clear()


def continuations(engine: Engine) -> list[int]:
    with Session(engine) as session:
        rows = session.exec(
            select(OutboxMessage).where(OutboxMessage.actor == "sync_user_notion_pages")
        ).all()
    return [json.loads(row.body)["args"][0] for row in rows]


def test_a_long_sync_yields_after_its_slice_and_queues_the_rest(
    db_engine: Engine, notion: FakeNotion
) -> None:
    heavy = add_user(db_engine, "heavy@example.com")
    connect_notion(db_engine, heavy, token=TOKEN)

    actors.sync_user_notion_pages.fn(heavy)

    # One page of results, committed; the rest is a new message behind everyone else's.
    assert len(notion.calls) == 1
    assert continuations(db_engine) == [heavy]
    with Session(db_engine) as session:
        assert len(session.exec(select(NotionPage)).all()) == 100
        assert session.exec(select(NotionConnection)).one().cursor is not None

    actors.sync_user_notion_pages.fn(heavy)  # what the continuation runs
    actors.sync_user_notion_pages.fn(heavy)
    assert len(notion.calls) == 3  # resumed from the committed cursor each time
    assert continuations(db_engine) == [heavy, heavy]  # the last run finished: no more
    with Session(db_engine) as session:
        assert len(session.exec(select(NotionPage)).all()) == 250
        assert session.exec(select(NotionConnection)).one().last_synced_at is not None


def test_a_users_slots_are_capped_across_connections(postgres_engine: Engine) -> None:
    with user_slot(7, cap=2) as first, user_slot(7, cap=2) as second:
        assert first and second
        with user_slot(7, cap=2) as third, user_slot(8, cap=2) as other_user:
            assert not third and other_user
    with user_slot(7, cap=2) as again:  # released when the jobs ended
        assert again


def held_advisory_locks(engine: Engine, user_id: int) -> int:
    """Advisory locks on ``user_id`` held in this database (the second key is the user)."""
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = :u"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    with engine.connect() as conn:
        return int(conn.execute(query, {"u": user_id}).scalar_one())


def test_a_kept_slot_connection_carries_no_lock_into_the_next_job(
    postgres_engine: Engine,
) -> None:
    with user_slot(9, cap=1) as first:
        assert first and held_advisory_locks(postgres_engine, 9) == 1
    assert held_advisory_locks(postgres_engine, 9) == 0  # released, though the connection stays
    with pytest.raises(RuntimeError), user_slot(9, cap=1):
        raise RuntimeError("the job failed")
    with user_slot(9, cap=1) as after_a_failure:
        assert after_a_failure
    assert held_advisory_locks(postgres_engine, 9) == 0


@pytest.mark.integration
def test_a_job_over_the_cap_is_deferred_without_holding_a_thread(
    postgres_engine: Engine, app_broker: dramatiq.Broker, notion: FakeNotion
) -> None:
    heavy = add_user(postgres_engine, "heavy@example.com")
    connect_notion(postgres_engine, heavy, token=TOKEN)

    with user_slot(heavy, cap=1) as running:  # another job of this user is running
        assert running
        actors.sync_user_notion_pages.fn(heavy)

    assert notion.calls == []  # nothing done now
    ready, delayed, _dead = app_broker.get_queue_message_counts("sync")
    assert (ready, delayed) == (0, 1)  # the same job again, a few seconds later
