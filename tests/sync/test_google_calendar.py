"""Google Calendar sync against a fake of events.list and the OAuth token endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.errors import PermanentHTTPError, TransientHTTPError
from bgworkers.settings import Settings
from bgworkers.sync.google_calendar import sync_calendar
from bgworkers.sync.http import ReauthorizationRequired, RequestRetryPolicy, UnexpectedResponse
from bgworkers.sync.models import (
    STATUS_ACTIVE,
    STATUS_REAUTH_REQUIRED,
    CalendarConnection,
    CalendarEvent,
)
from tests.sync.fakes import FakeClock, FakeGoogleCalendar
from tests.sync.helpers import ACCESS, add_user, connect_calendar

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
START = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def run(
    engine: Engine,
    user_id: int,
    client: httpx.Client,
    settings: Settings,
    policy: RequestRetryPolicy,
):  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return sync_calendar(
            session=session,
            user_id=user_id,
            client=client,
            settings=settings,
            now=NOW,
            policy=policy,
        )


def stored(engine: Engine, user_id: int) -> dict[str, CalendarEvent]:
    with Session(engine) as session:
        rows = session.exec(select(CalendarEvent).where(CalendarEvent.user_id == user_id)).all()
        return {row.external_id: row for row in rows}


def connection(engine: Engine, user_id: int) -> CalendarConnection:
    with Session(engine) as session:
        row = session.exec(
            select(CalendarConnection).where(CalendarConnection.user_id == user_id)
        ).one()
        return row


def fill(google: FakeGoogleCalendar, count: int) -> None:
    for n in range(count):
        google.put_event(f"ev{n:05d}", summary=f"Event {n}", start=START + timedelta(hours=n))


@pytest.fixture
def user(db_engine: Engine) -> int:
    user_id = add_user(db_engine, "ada@example.com")
    connect_calendar(db_engine, user_id)
    return user_id


def test_full_sync_pages_through_every_event(
    db_engine: Engine, user: int, google, google_client, settings, policy, registry
) -> None:
    fill(google, 600)
    google.put_event("allday", summary="Holiday", all_day="2026-12-24")
    google.put_event("tentative", summary="Maybe", start=START, status="tentative")

    result = run(db_engine, user, google_client, settings, policy)

    calls = google.event_calls()
    assert [c.url.params.get("maxResults") for c in calls] == ["250"] * 3
    assert "pageToken" not in calls[0].url.params
    assert all("pageToken" in c.url.params for c in calls[1:])
    assert all(c.url.params["singleEvents"] == "true" for c in calls)
    assert calls[0].url.path == "/calendar/v3/calendars/primary/events"
    assert (result.pages, result.upserted, result.full_sync) == (3, 602, True)
    events = stored(db_engine, user)
    assert len(events) == 602
    first = events["ev00000"]
    assert (first.title, first.starts_at, first.ends_at) == (
        "Event 0",
        START,
        START + timedelta(hours=1),
    )
    assert first.starts_at.tzinfo is not None and first.status == "confirmed" and not first.all_day
    holiday = events["allday"]
    assert holiday.all_day and holiday.starts_at == datetime(2026, 12, 24, tzinfo=UTC)
    assert holiday.ends_at == datetime(2026, 12, 25, tzinfo=UTC)
    assert events["tentative"].status == "tentative"
    conn = connection(db_engine, user)
    assert conn.sync_token and conn.sync_token in google.sync_tokens
    assert conn.page_token is None and conn.last_synced_at == NOW
    assert (
        registry.get_sample_value(
            "bgworkers_sync_items_total", {"provider": "google_calendar", "action": "upserted"}
        )
        == 602
    )
    assert (
        registry.get_sample_value(
            "bgworkers_sync_runs_total", {"provider": "google_calendar", "outcome": "completed"}
        )
        == 1
    )


def test_incremental_sync_sends_sync_token_upserts_changes_and_removes_cancelled(
    db_engine: Engine, user: int, google, google_client, settings, policy
) -> None:
    fill(google, 3)
    run(db_engine, user, google_client, settings, policy)
    token = connection(db_engine, user).sync_token
    google.put_event("ev00001", summary="Moved", start=START + timedelta(days=2))
    google.put_event("new", summary="Added", start=START)
    google.cancel_event("ev00002")
    google.cancel_event("never-seen")  # cancelled before we ever stored it: nothing to do

    result = run(db_engine, user, google_client, settings, policy)

    last = google.event_calls()[-1]
    assert last.url.params["syncToken"] == token
    assert (result.full_sync, result.upserted, result.removed) == (False, 2, 1)
    events = stored(db_engine, user)
    assert set(events) == {"ev00000", "ev00001", "new"}
    assert events["ev00001"].title == "Moved"
    assert events["ev00001"].starts_at == START + timedelta(days=2)
    assert connection(db_engine, user).sync_token != token

    # Nothing changed: a duplicate delivery stores nothing new and keeps every event.
    again = run(db_engine, user, google_client, settings, policy)
    assert (again.upserted, again.removed) == (0, 0)
    assert set(stored(db_engine, user)) == {"ev00000", "ev00001", "new"}


def test_gone_sync_token_falls_back_to_full_resync(
    db_engine: Engine, user: int, google, google_client, settings, policy, registry
) -> None:
    fill(google, 300)
    run(db_engine, user, google_client, settings, policy)
    google.purge_event("ev00007")  # deleted so long ago that only a full listing shows it
    google.put_event("ev00008", summary="Renamed", start=START)
    google.expire_sync_tokens()

    result = run(db_engine, user, google_client, settings, policy)

    statuses = [c.url.params.get("syncToken") is not None for c in google.event_calls()[2:]]
    assert statuses == [True, False, False]  # 410 on the token, then a full two-page listing
    assert result.full_sync and result.removed == 1
    events = stored(db_engine, user)
    assert len(events) == 299 and "ev00007" not in events
    assert events["ev00008"].title == "Renamed"
    assert connection(db_engine, user).sync_token in google.sync_tokens
    assert (
        registry.get_sample_value(
            "bgworkers_sync_full_resyncs_total", {"provider": "google_calendar", "reason": "gone"}
        )
        == 1
    )


def test_401_refreshes_the_access_token_once_then_succeeds(
    db_engine: Engine, google, google_client, settings, policy, registry
) -> None:
    user_id = add_user(db_engine, "bob@example.com")
    connect_calendar(db_engine, user_id, access="access-expired")
    fill(google, 2)

    result = run(db_engine, user_id, google_client, settings, policy)

    assert result.upserted == 2
    [refresh] = google.token_calls()
    form = dict(x.split("=", 1) for x in refresh.content.decode().split("&"))
    assert form == {
        "grant_type": "refresh_token",
        "refresh_token": "refresh-initial",
        "client_id": "client-id",
        "client_secret": "client-secret",
    }
    assert refresh.headers["Content-Type"] == "application/x-www-form-urlencoded"
    conn = connection(db_engine, user_id)
    assert conn.access_token == google.issued_access_tokens[0]
    assert conn.access_token_expires_at == NOW + timedelta(seconds=3599)
    assert google.event_calls()[-1].headers["Authorization"] == f"Bearer {conn.access_token}"
    assert (
        registry.get_sample_value(
            "bgworkers_sync_token_refreshes_total",
            {"provider": "google_calendar", "outcome": "refreshed"},
        )
        == 1
    )


def test_second_401_after_refresh_is_permanent_for_that_user_only(
    db_engine: Engine, user: int, google, google_client, settings, policy
) -> None:
    other = add_user(db_engine, "carol@example.com")
    connect_calendar(db_engine, other)
    fill(google, 2)
    google.accept_access = False

    with pytest.raises(ReauthorizationRequired):
        run(db_engine, user, google_client, settings, policy)

    assert len(google.token_calls()) == 1  # refreshed once, never twice
    conn = connection(db_engine, user)
    assert conn.status == STATUS_REAUTH_REQUIRED and "401" in (conn.last_error or "")
    assert stored(db_engine, user) == {}
    # Another user's sync is untouched and still works once Google accepts tokens.
    google.accept_access = True
    assert run(db_engine, other, google_client, settings, policy).upserted == 2
    assert connection(db_engine, other).status == STATUS_ACTIVE
    # The failed user is skipped from now on, until the application reconnects it.
    assert run(db_engine, user, google_client, settings, policy).outcome == "skipped"


def test_revoked_refresh_token_is_permanent(
    db_engine: Engine, google, google_client, settings, policy
) -> None:
    user_id = add_user(db_engine, "dan@example.com")
    connect_calendar(db_engine, user_id, access="access-expired")
    google.refresh_tokens.clear()

    with pytest.raises(ReauthorizationRequired, match="invalid_grant"):
        run(db_engine, user_id, google_client, settings, policy)
    assert connection(db_engine, user_id).status == STATUS_REAUTH_REQUIRED


def test_429_with_short_retry_after_is_retried_in_the_request(
    db_engine: Engine, user: int, google, google_client, settings, policy, clock: FakeClock
) -> None:
    fill(google, 300)
    google.inject("events", 429, after=1, headers={"Retry-After": "2"}, reason="rateLimitExceeded")

    result = run(db_engine, user, google_client, settings, policy)

    assert result.upserted == 300
    assert clock.sleeps == [2.0]
    assert len(google.event_calls()) == 3


def test_429_with_long_retry_after_hands_the_wait_to_the_broker(
    db_engine: Engine, user: int, google, google_client, settings, policy, clock: FakeClock
) -> None:
    fill(google, 300)
    google.inject("events", 429, after=1, headers={"Retry-After": "120"})

    with pytest.raises(TransientHTTPError) as caught:
        run(db_engine, user, google_client, settings, policy)

    assert caught.value.retry_after_s == 120 and caught.value.status_code == 429
    assert clock.sleeps == []  # never slept 2 minutes in a worker thread
    assert len(stored(db_engine, user)) == 250  # the first page stays committed


def test_google_403_rate_limit_is_transient(
    db_engine: Engine, user: int, google, google_client, settings, policy, clock: FakeClock
) -> None:
    fill(google, 1)
    google.inject("events", 403, reason="userRateLimitExceeded")
    assert run(db_engine, user, google_client, settings, policy).upserted == 1
    assert clock.sleeps == [0.5]


def test_5xx_is_retried_with_backoff_then_raised_as_transient(
    db_engine: Engine, user: int, google, google_client, settings, policy, clock: FakeClock
) -> None:
    fill(google, 1)
    google.inject("events", 503, times=3)

    with pytest.raises(TransientHTTPError) as caught:
        run(db_engine, user, google_client, settings, policy)

    assert caught.value.status_code == 503 and caught.value.retry_after_s is None
    assert clock.sleeps == [0.5, 1.0]  # exponential backoff between the three attempts
    assert connection(db_engine, user).status == STATUS_ACTIVE

    google.inject("events", 500)  # one more blip: absorbed inside the request
    assert run(db_engine, user, google_client, settings, policy).upserted == 1


def test_5xx_on_the_token_endpoint_is_transient(
    db_engine: Engine, google, google_client, settings, policy
) -> None:
    user_id = add_user(db_engine, "erin@example.com")
    connect_calendar(db_engine, user_id, access="access-expired")
    google.inject("token", 500, times=3)
    with pytest.raises(TransientHTTPError):
        run(db_engine, user_id, google_client, settings, policy)
    assert connection(db_engine, user_id).status == STATUS_ACTIVE


def test_other_4xx_is_permanent_for_that_user_only(
    db_engine: Engine, google, google_client, settings, policy, clock: FakeClock
) -> None:
    lost = add_user(db_engine, "frank@example.com")
    connect_calendar(db_engine, lost, calendar_id="deleted@group.calendar.google.com")
    fine = add_user(db_engine, "gina@example.com")
    connect_calendar(db_engine, fine)
    fill(google, 2)

    with pytest.raises(PermanentHTTPError) as caught:
        run(db_engine, lost, google_client, settings, policy)

    assert caught.value.status_code == 404 and clock.sleeps == []  # not retried
    path = google.event_calls()[0].url.raw_path.decode()
    assert path.startswith("/calendar/v3/calendars/deleted%40group.calendar.google.com/events")
    conn = connection(db_engine, lost)
    assert conn.status == STATUS_ACTIVE  # recorded, tried again next hour
    assert conn.last_error == "calendar events.list: HTTP 404 (notFound)"
    assert run(db_engine, fine, google_client, settings, policy).upserted == 2


@pytest.mark.parametrize("incremental", [False, True])
def test_failure_half_way_resumes_from_the_last_committed_page(
    db_engine: Engine, user: int, google, google_client, settings, policy, incremental: bool
) -> None:
    if incremental:
        google.put_event("seed", start=START)
        run(db_engine, user, google_client, settings, policy)
    fill(google, 1000)  # four pages
    before = len(google.event_calls())
    google.inject("events", 503, after=2, times=3)  # the third page fails three times

    with pytest.raises(TransientHTTPError):
        run(db_engine, user, google_client, settings, policy)

    assert len(stored(db_engine, user)) == 500 + incremental
    progress = connection(db_engine, user)
    assert progress.page_token in google.page_tokens
    assert (progress.sync_token is not None) == incremental

    result = run(db_engine, user, google_client, settings, policy)

    resumed = google.event_calls()[before + 5]
    assert resumed.url.params["pageToken"] == progress.page_token
    assert result.pages == 2 and result.upserted == 500
    assert len(stored(db_engine, user)) == 1000 + incremental
    assert connection(db_engine, user).page_token is None


def test_malformed_event_is_skipped_and_counted(
    db_engine: Engine, user: int, google, google_client, settings, policy
) -> None:
    fill(google, 2)
    google.events["broken"] = {"kind": "calendar#event", "id": "broken", "status": "confirmed"}
    google.changed_at["broken"] = 99
    result = run(db_engine, user, google_client, settings, policy)
    assert (result.upserted, result.malformed) == (2, 1)


def test_a_2xx_without_the_documented_shape_is_permanent(
    db_engine: Engine, user: int, google_client, settings, policy, google
) -> None:
    google.inject("events", 200, body=["not", "an", "object"])
    with pytest.raises(UnexpectedResponse):
        run(db_engine, user, google_client, settings, policy)


def test_tokens_used_are_the_stored_ones(
    db_engine: Engine, user: int, google, google_client, settings, policy
) -> None:
    fill(google, 1)
    run(db_engine, user, google_client, settings, policy)
    assert google.event_calls()[0].headers["Authorization"] == f"Bearer {ACCESS}"
    assert google.token_calls() == []


@pytest.mark.parametrize("incremental", [False, True])
def test_a_stored_page_token_google_rejects_restarts_the_listing(
    db_engine: Engine, user: int, google, google_client, settings, policy, incremental: bool
) -> None:
    if incremental:
        google.put_event("seed", start=START)
        run(db_engine, user, google_client, settings, policy)
    fill(google, 300)  # two pages
    google.inject("events", 503, after=1, times=3)
    with pytest.raises(TransientHTTPError):
        run(db_engine, user, google_client, settings, policy)
    stale = connection(db_engine, user)
    assert stale.page_token is not None
    google.page_tokens.clear()  # Google no longer knows the stored page token
    before = len(google.event_calls())

    result = run(db_engine, user, google_client, settings, policy)

    calls = google.event_calls()[before:]
    assert calls[0].url.params["pageToken"] == stale.page_token
    assert "pageToken" not in calls[1].url.params
    assert calls[1].url.params.get("syncToken") == stale.sync_token
    assert result.outcome == "completed"
    assert len(stored(db_engine, user)) == 300 + incremental
    done = connection(db_engine, user)
    assert done.page_token is None and done.sync_token is not None
    assert done.status == STATUS_ACTIVE and done.last_error is None
