"""A page of users' calendar syncs in one message: the common case together, the rest alone.

The fake Google API answers at the HTTP layer with its wire format (one fake calendar per
user, routed by the calendar id in the path); the database is the real PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import dramatiq
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bgworkers.outbox.models import OutboxMessage
from bgworkers.settings import Settings, get_settings
from bgworkers.sync import actors
from bgworkers.sync.calendar_page import PageResult, sync_calendar_page
from bgworkers.sync.http import build_client, use_client
from bgworkers.sync.limits import google_limits
from bgworkers.sync.models import CalendarConnection, CalendarEvent, RateLimitSlot
from bgworkers.sync.page_requests import run_all
from bgworkers.sync.pause_chain import MAX_RESUME_DELAY_S
from bgworkers.sync.shared_limits import Limit, SharedLimiter, SlotStore
from bgworkers.users.slots import user_slot, user_slots
from tests.platform_helpers import wait_for
from tests.sync.fakes import FakeGoogleCalendar
from tests.sync.helpers import add_user, connect_calendar

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


class Calendars:
    """One fake Google calendar per user (its calendar id is ``cal-<user id>``)."""

    def __init__(self) -> None:
        self.by_id: dict[str, FakeGoogleCalendar] = {}
        #: A calendar answered by another handler (one that wraps its fake).
        self.wrapped: dict[str, Callable[[httpx.Request], httpx.Response]] = {}

    def add(self, engine: Engine, user_id: int, events: int = 3) -> FakeGoogleCalendar:
        fake = FakeGoogleCalendar(calendars={f"cal-{user_id}"})
        for n in range(events):
            fake.put_event(f"ev{n:04d}", summary=f"Event {n}")
        self.by_id[f"cal-{user_id}"] = fake
        connect_calendar(engine, user_id, calendar_id=f"cal-{user_id}")
        return fake

    def __call__(self, request: httpx.Request) -> httpx.Response:
        match = re.search(r"/calendars/([^/]+)/events$", request.url.path)
        calendar_id = match.group(1) if match else ""
        fake = self.wrapped.get(calendar_id) or self.by_id.get(calendar_id)
        if fake is None:
            return httpx.Response(404, json={"error": {"code": 404, "message": "Not Found"}})
        return fake(request)


@pytest.fixture
def calendars() -> Calendars:
    return Calendars()


def run_page(engine: Engine, settings: Settings, route: Calendars, users: list[int]) -> PageResult:
    limiter = SharedLimiter(SlotStore(engine), fallback_share=0.1, max_wait_s=5)
    with (
        build_client(settings, transport=httpx.MockTransport(route)) as client,
        Session(engine) as session,
    ):
        return sync_calendar_page(
            session=session,
            user_ids=users,
            client=client,
            settings=settings,
            limiter=limiter,
            now=NOW,
            run_all=lambda fn, items: run_all(settings, fn, items),
            hand_off=actors._hand_off_calendar,
        )


def with_calendars(engine: Engine, calendars: Calendars, count: int) -> list[int]:
    """``count`` new users, each with a connected calendar of three events."""
    users = [add_user(engine, f"u{n}@example.com") for n in range(count)]
    for user_id in users:
        calendars.add(engine, user_id)
    return users


def rate_limit(calendars: Calendars, user_id: int, *, retry_after_s: int) -> None:
    """The user's next events request is refused as Google refuses one over its quota."""
    calendars.by_id[f"cal-{user_id}"].inject(
        "events", 429, reason="rateLimitExceeded", headers={"Retry-After": str(retry_after_s)}
    )


def handed_off(engine: Engine) -> list[int]:
    with Session(engine) as session:
        rows = session.exec(
            select(OutboxMessage).where(OutboxMessage.actor == "sync_user_calendar")
        ).all()
    return sorted(json.loads(row.body)["args"][0] for row in rows)


def events_of(engine: Engine, user_id: int) -> int:
    with Session(engine) as session:
        return len(
            session.exec(select(CalendarEvent).where(CalendarEvent.user_id == user_id)).all()
        )


def connection(engine: Engine, user_id: int) -> CalendarConnection:
    with Session(engine) as session:
        return session.exec(
            select(CalendarConnection).where(CalendarConnection.user_id == user_id)
        ).one()


def test_a_page_writes_its_users_and_hands_on_the_heavy_and_the_failing(
    postgres_engine: Engine, settings: Settings, calendars: Calendars
) -> None:
    light = [add_user(postgres_engine, f"light{n}@example.com") for n in range(3)]
    heavy = add_user(postgres_engine, "heavy@example.com")
    failing = add_user(postgres_engine, "failing@example.com")
    for user_id in light:
        calendars.add(postgres_engine, user_id)
    calendars.add(postgres_engine, heavy, events=300)  # two pages of 250
    calendars.add(postgres_engine, failing).inject("events", 503)

    result = run_page(postgres_engine, settings, calendars, [*light, heavy, failing])

    assert sorted(result.completed) == light
    assert result.continued == [heavy] and result.handed_off == [failing]
    assert result.reasons == {"TransientHTTPError": 1}  # said in the page's log line
    for user_id in light:
        assert events_of(postgres_engine, user_id) == 3
        synced = connection(postgres_engine, user_id)
        assert synced.sync_token and synced.last_synced_at == NOW and synced.generation == 1
    # The heavy user's first page is committed; the rest is its own message, as is the
    # failing user's retry (nothing of it written).
    assert events_of(postgres_engine, heavy) == 250
    assert connection(postgres_engine, heavy).page_token is not None
    assert connection(postgres_engine, heavy).last_synced_at is None
    assert events_of(postgres_engine, failing) == 0
    assert connection(postgres_engine, failing).sync_token is None
    assert handed_off(postgres_engine) == sorted([heavy, failing])
    # One request per user: nobody was listed twice.
    assert [len(f.event_calls()) for f in calendars.by_id.values()] == [1] * 5


def test_an_incremental_page_applies_changes_and_cancellations(
    postgres_engine: Engine, settings: Settings, calendars: Calendars
) -> None:
    users = [add_user(postgres_engine, f"u{n}@example.com") for n in range(3)]
    fakes = [calendars.add(postgres_engine, user_id) for user_id in users]
    run_page(postgres_engine, settings, calendars, users)
    fakes[0].cancel_event("ev0000")
    fakes[1].put_event("ev0100", summary="New")

    result = run_page(postgres_engine, settings, calendars, users)

    assert sorted(result.completed) == users and result.removed == 1
    assert [events_of(postgres_engine, u) for u in users] == [2, 4, 3]
    assert handed_off(postgres_engine) == []


def test_a_poisoned_user_fails_alone_and_is_handed_to_its_own_message(
    postgres_engine: Engine, settings: Settings, calendars: Calendars
) -> None:
    users = with_calendars(postgres_engine, calendars, 4)
    poisoned = users[2]
    calendars.by_id[f"cal-{poisoned}"].put_event("x" * 2000)  # longer than the id column
    heavy = add_user(postgres_engine, "heavy@example.com")
    calendars.add(postgres_engine, heavy, events=300)

    result = run_page(postgres_engine, settings, calendars, [*users, heavy])

    others = [u for u in users if u != poisoned]
    assert sorted(result.completed) == others and result.handed_off == [poisoned]
    assert result.continued == [heavy] and events_of(postgres_engine, heavy) == 250
    assert result.reasons == {"DataError": 1}
    for user_id in others:
        assert events_of(postgres_engine, user_id) == 3
        assert connection(postgres_engine, user_id).sync_token
    assert events_of(postgres_engine, poisoned) == 0
    assert connection(postgres_engine, poisoned).sync_token is None
    # Retried alone; the heavy user goes on once, though the page's first write failed.
    assert handed_off(postgres_engine) == sorted([poisoned, heavy])


def test_a_rate_limited_user_pauses_its_credential_everywhere_and_goes_on_alone(
    postgres_engine: Engine, settings: Settings, calendars: Calendars
) -> None:
    users = with_calendars(postgres_engine, calendars, 3)
    limited = users[1]
    rate_limit(calendars, limited, retry_after_s=30)

    result = run_page(postgres_engine, settings, calendars, users)

    assert result.handed_off == [limited]
    store = SlotStore(postgres_engine)
    own_key = google_limits(settings, limited)[0].key
    assert store.paused_for([own_key]) > 20  # every process holds off this credential
    assert store.paused_for([google_limits(settings, users[0])[0].key]) == 0


def test_a_long_retry_after_hands_the_user_on_no_later_than_a_worker_may_hold_it(
    postgres_engine: Engine, settings: Settings, calendars: Calendars
) -> None:
    users = with_calendars(postgres_engine, calendars, 2)
    limited = users[1]
    rate_limit(calendars, limited, retry_after_s=3600)

    result = run_page(postgres_engine, settings, calendars, users)
    assert result.handed_off == [limited]
    again = run_page(postgres_engine, settings, calendars, [limited])  # found paused, 1 h
    assert again.handed_off == [limited]

    with Session(postgres_engine) as session:
        rows = session.exec(
            select(OutboxMessage).where(OutboxMessage.actor == "sync_user_calendar")
        ).all()
    delays = [(row.available_at - row.created_at).total_seconds() for row in rows]
    # A delayed message waits unacknowledged in a worker: longer than RabbitMQ's consumer
    # timeout (30 min) and the channel is closed; the pause is found again after the delay.
    assert len(delays) == 2
    assert all(0 < delay <= MAX_RESUME_DELAY_S for delay in delays), delays


def test_reserving_a_page_spaces_each_credential_and_the_shared_cap(
    postgres_engine: Engine,
) -> None:
    store = SlotStore(postgres_engine)
    everyone = Limit("google:all", 10.0)  # 0.1 s apart
    requests = [[Limit(f"google:user:{n % 2}", 2.0), everyone] for n in range(4)]

    slots = store.reserve_many(requests)
    waits = [slot.wait_s for slot in slots]

    assert not any(slot.paused for slot in slots)
    assert waits == sorted(waits)
    gaps = [b - a for a, b in itertools.pairwise(waits)]
    assert all(gap >= 0.1 - 1e-6 for gap in gaps)  # the shared cap
    assert waits[2] - waits[0] >= 0.5 - 1e-6  # the same user: 2 per second
    store.pause("google:user:0", 60)
    [refused] = store.reserve_many([[Limit("google:user:0", 2.0)]])
    assert refused.paused and refused.wait_s >= 59


def test_a_paused_user_in_a_page_reserves_nothing_and_holds_no_other_user(
    postgres_engine: Engine, settings: Settings, calendars: Calendars
) -> None:
    limited, other = with_calendars(postgres_engine, calendars, 2)  # limited first in a page
    rate_limit(calendars, limited, retry_after_s=30)
    run_page(postgres_engine, settings, calendars, [limited])  # the 429 pauses its credential

    result = run_page(postgres_engine, settings, calendars, [limited, other])

    assert result.reasons == {"paused": 1} and result.handed_off == [limited]
    assert result.completed == [other]  # at once: the project's cap was not moved past it
    with Session(postgres_engine) as session:
        own, project = (session.get(RateLimitSlot, x.key) for x in google_limits(settings, limited))
        assert own is not None and project is not None
        assert own.next_at < own.paused_until and project.next_at < own.paused_until
        rows = session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))).all()
    resend = rows[-1]  # the paused user's own message, for when its pause ends
    assert json.loads(resend.body)["args"] == [limited]
    assert 20 < (resend.available_at - resend.created_at).total_seconds() <= 30


def held_locks(engine: Engine) -> int:
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def test_a_page_takes_its_users_slots_together_and_leaves_users_at_the_cap(
    postgres_engine: Engine,
) -> None:
    before = held_locks(postgres_engine)
    with user_slot(2, cap=1) as busy:  # another job of user 2 is running
        assert busy
        with user_slots([1, 2, 3], cap=1) as taken:
            assert taken == {1, 3}
            assert held_locks(postgres_engine) == before + 3
        assert held_locks(postgres_engine) == before + 1
    with user_slots([1, 2, 3], cap=2) as taken, user_slots([1, 2], cap=2) as second:
        assert taken == {1, 2, 3} and second == {1, 2}  # a second slot each
    assert held_locks(postgres_engine) == before


@pytest.fixture
def worker_calendars(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calendars]:
    monkeypatch.setenv("BGW_SYNC_PAGE_SIZE", "10")
    get_settings.cache_clear()
    route = Calendars()
    use_client(build_client(get_settings(), transport=httpx.MockTransport(route)))
    yield route
    use_client(None)
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.integration
def test_pages_through_rabbitmq_sync_everyone_once_and_the_poisoned_alone(
    postgres_engine: Engine,
    app_broker: dramatiq.Broker,
    app_worker: dramatiq.Worker,
    worker_calendars: Calendars,
) -> None:
    users = with_calendars(postgres_engine, worker_calendars, 25)
    poisoned = users[12]
    worker_calendars.by_id[f"cal-{poisoned}"].put_event("x" * 2000)

    actors.sync_calendar_events.send()

    others = [u for u in users if u != poisoned]
    wait_for(lambda: all(connection(postgres_engine, u).sync_token for u in others), timeout_s=60)
    # The poisoned user's own message ran (and failed) alone, on its own retries.
    wait_for(
        lambda: len(worker_calendars.by_id[f"cal-{poisoned}"].event_calls()) >= 2, timeout_s=60
    )
    for user_id in others:
        assert events_of(postgres_engine, user_id) == 3
        assert len(worker_calendars.by_id[f"cal-{user_id}"].event_calls()) == 1
    assert connection(postgres_engine, poisoned).sync_token is None


def test_a_connection_moved_by_another_delivery_is_left_to_it(
    postgres_engine: Engine, settings: Settings, calendars: Calendars
) -> None:
    users = with_calendars(postgres_engine, calendars, 2)
    moved = users[0]
    original = calendars.by_id[f"cal-{moved}"]

    def answer_then_move(request: httpx.Request) -> httpx.Response:
        response = original(request)
        with Session(postgres_engine) as session:  # the user's own message finished meanwhile
            row = session.exec(
                select(CalendarConnection).where(CalendarConnection.user_id == moved)
            ).one()
            row.sync_token = "sync-from-elsewhere"
            session.add(row)
            session.commit()
        return response

    calendars.wrapped[f"cal-{moved}"] = answer_then_move
    result = run_page(postgres_engine, settings, calendars, users)

    assert result.superseded == [moved] and result.completed == [users[1]]
    assert connection(postgres_engine, moved).sync_token == "sync-from-elsewhere"
    assert events_of(postgres_engine, moved) == 0
