"""Fan-out and the actors: per-user messages after commit, and the real RabbitMQ path."""

from __future__ import annotations

import json
from collections.abc import Iterator

import dramatiq
import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.db.engine import session_scope
from bgworkers.outbox.models import OutboxMessage
from bgworkers.settings import get_settings
from bgworkers.sync import actors
from bgworkers.sync.http import build_client, use_client
from bgworkers.sync.models import (
    STATUS_REAUTH_REQUIRED,
    CalendarConnection,
    CalendarEvent,
    NotionConnection,
    NotionPage,
)
from bgworkers.sync.store import fan_out
from tests.platform_helpers import wait_for
from tests.sync.fakes import FakeGoogleCalendar, FakeNotion
from tests.sync.helpers import add_user, connect_calendar, connect_notion


def test_fan_out_sends_active_users_in_batches_after_commit(db_engine: Engine) -> None:
    users = [add_user(db_engine, f"u{n}@example.com") for n in range(5)]
    for user_id in users:
        connect_calendar(db_engine, user_id)
    with Session(db_engine) as session:
        conn = session.exec(
            select(CalendarConnection).where(CalendarConnection.user_id == users[2])
        ).one()
        conn.status = STATUS_REAUTH_REQUIRED
        session.add(conn)
        session.commit()
    sent: list[list[int]] = []

    with session_scope(db_engine) as session:
        count = fan_out(session, CalendarConnection, batch_size=2, send_batch=sent.append)

    assert count == 4
    assert sent == [[users[0], users[1]], [users[3], users[4]]]


def test_fan_out_records_one_message_per_user_in_the_transaction(db_engine: Engine) -> None:
    users = [add_user(db_engine, f"u{n}@example.com") for n in range(3)]
    for user_id in users:
        connect_calendar(db_engine, user_id)

    with pytest.raises(RuntimeError), session_scope(db_engine) as session:
        send_batch = actors._sender(session, actors.sync_user_calendar, "google_calendar")
        assert fan_out(session, CalendarConnection, batch_size=2, send_batch=send_batch) == 3
        raise RuntimeError("rolled back")
    with Session(db_engine) as session:
        assert session.exec(select(OutboxMessage)).all() == []  # a rolled-back fan-out: none

    actors.sync_calendar_events.fn()  # pages of users (BGW_SYNC_PAGE_SIZE, 50)
    with Session(db_engine) as session:
        rows = session.exec(select(OutboxMessage)).all()
    assert [json.loads(row.body)["args"][0] for row in rows] == [sorted(users)]
    assert {row.actor for row in rows} == {"sync_calendar_page"}


def test_periodic_actors_are_scheduled_on_the_sync_queue() -> None:
    for actor in (actors.sync_calendar_events, actors.sync_notion_pages):
        assert actor.queue_name == "sync"
        assert actor.options["periodic"] is not None
    for actor in (actors.sync_user_calendar, actors.sync_user_notion_pages):
        assert actor.queue_name == "sync" and "periodic" not in actor.options


@pytest.fixture
def fakes() -> Iterator[tuple[FakeGoogleCalendar, FakeNotion]]:
    settings = get_settings()
    google = FakeGoogleCalendar(
        client_id=settings.google_client_id,
        client_secret=settings.google_client_secret.get_secret_value(),
    )
    notion = FakeNotion(token="secret_notion-initial", version=settings.notion_version)

    def route(request: httpx.Request) -> httpx.Response:
        return notion(request) if request.url.host == "api.notion.com" else google(request)

    use_client(build_client(settings, transport=httpx.MockTransport(route)))
    yield google, notion
    use_client(None)


@pytest.mark.integration
def test_sync_through_rabbitmq_fans_out_and_isolates_a_failing_user(
    sqlite_engine: Engine,
    app_broker: dramatiq.Broker,
    app_worker: dramatiq.Worker,
    fakes: tuple[FakeGoogleCalendar, FakeNotion],
) -> None:
    google, notion = fakes
    for n in range(300):
        google.put_event(f"ev{n:04d}", summary=f"Event {n}")
    notion.put_page("Roadmap", edited=google_time())
    ok = add_user(sqlite_engine, "ok@example.com")
    connect_calendar(sqlite_engine, ok)
    connect_notion(sqlite_engine, ok)
    broken = add_user(sqlite_engine, "broken@example.com")
    connect_calendar(sqlite_engine, broken, calendar_id="gone@group.calendar.google.com")
    connect_notion(sqlite_engine, broken, token="secret_revoked")

    actors.sync_calendar_events.send()
    actors.sync_notion_pages.send()
    app_broker.join("sync", timeout=60_000)
    # join() sees only ready messages: a per-user message may still be running, so wait for
    # the state the run must reach before asserting it.
    wait_for(
        lambda: settled(sqlite_engine, ok, broken), timeout_s=60, what="both users' syncs to settle"
    )

    with Session(sqlite_engine) as session:
        events = session.exec(select(CalendarEvent)).all()
        assert {e.user_id for e in events} == {ok} and len(events) == 300
        assert [p.title for p in session.exec(select(NotionPage)).all()] == ["Roadmap"]
        calendar = {c.user_id: c for c in session.exec(select(CalendarConnection))}
        assert calendar[ok].sync_token and calendar[ok].last_error is None
        assert "404" in (calendar[broken].last_error or "")
        notion_rows = {c.user_id: c for c in session.exec(select(NotionConnection))}
        assert notion_rows[broken].status == STATUS_REAUTH_REQUIRED
    # The failing user was tried once in its page, then handed to a message of its own,
    # which was dead-lettered once, not retried.
    assert len([c for c in google.event_calls() if "gone" in c.url.path]) == 2


def settled(engine: Engine, ok: int, broken: int) -> bool:
    with Session(engine) as session:
        calendar = {c.user_id: c for c in session.exec(select(CalendarConnection))}
        notion_rows = {c.user_id: c for c in session.exec(select(NotionConnection))}
        return (
            bool(calendar[ok].sync_token)
            and calendar[broken].last_error is not None
            and notion_rows[ok].last_synced_at is not None
            and notion_rows[broken].status == STATUS_REAUTH_REQUIRED
        )


def google_time():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime(2026, 11, 20, tzinfo=UTC)


def test_worker_shutdown_closes_the_process_client() -> None:
    from dramatiq.brokers.stub import StubBroker

    from bgworkers.middleware.worker_hooks import CloseResources
    from bgworkers.sync.http import close_client, get_client

    broker = StubBroker(middleware=[CloseResources()])
    use_client(None)
    client = get_client(get_settings())
    assert get_client(get_settings()) is client  # one per process, not one per message
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()
    worker.stop()
    assert client.is_closed
    assert get_client(get_settings()) is not client  # a later use makes a fresh one
    close_client()
