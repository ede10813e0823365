"""The HTTP layer: Retry-After parsing, classification, a real local server, secret-free logs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.errors import PermanentHTTPError, TransientHTTPError
from bgworkers.settings import Settings
from bgworkers.sync.google_calendar import sync_calendar
from bgworkers.sync.http import (
    AuthenticationFailed,
    RequestRetryPolicy,
    ResourceGone,
    build_client,
    parse_retry_after,
    raise_for_status,
    send,
)
from bgworkers.sync.models import CalendarConnection, CalendarEvent
from bgworkers.sync.notion import sync_notion
from bgworkers.sync.ratelimit import RateLimiter
from tests.sync.fakes import FakeClock, FakeGoogleCalendar, FakeNotion, serve_http
from tests.sync.helpers import NOTION_TOKEN, REFRESH, add_user, connect_calendar, connect_notion

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    now = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 25 Nov 2026 09:01:30 GMT", now=now) == 90.0
    assert parse_retry_after("Wed, 25 Nov 2026 08:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, TransientHTTPError),
        (500, TransientHTTPError),
        (503, TransientHTTPError),
        (408, TransientHTTPError),
        (400, PermanentHTTPError),
        (403, PermanentHTTPError),
        (404, PermanentHTTPError),
        (401, AuthenticationFailed),
        (410, ResourceGone),
    ],
)
def test_status_classification(status: int, error: type[Exception]) -> None:
    request = httpx.Request("GET", "https://example.test/x?syncToken=abc")
    response = httpx.Response(status, headers={"Retry-After": "3"}, request=request)
    with pytest.raises(error) as caught:
        raise_for_status(response, operation="op")
    assert "syncToken" not in str(caught.value) and "abc" not in str(caught.value)
    if isinstance(caught.value, TransientHTTPError):
        assert caught.value.retry_after_s == 3.0


def test_transport_errors_are_transient_and_retried(settings: Settings) -> None:
    clock = FakeClock()
    attempts: list[int] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        raise httpx.ConnectError("connection refused", request=request)

    policy = RequestRetryPolicy(max_attempts=3, sleep=clock.sleep)
    client = build_client(settings, transport=httpx.MockTransport(refuse))
    with client, pytest.raises(TransientHTTPError, match="ConnectError") as caught:
        send(
            client,
            lambda: client.build_request("GET", "https://example.test/"),
            operation="probe",
            provider="test",
            policy=policy,
        )
    assert caught.value.status_code is None
    assert len(attempts) == 3 and clock.sleeps == [0.5, 1.0]


def test_client_has_explicit_timeouts(settings: Settings) -> None:
    with build_client(settings) as client:
        assert client.timeout.read == settings.http_timeout_s
        assert client.timeout.connect is not None and client.timeout.connect <= 5.0


def connected_user(db_engine: Engine, *, events: int) -> tuple[FakeGoogleCalendar, FakeNotion, int]:
    """A user with an expired Google token and a Notion token, and both fake APIs filled."""
    google = FakeGoogleCalendar()
    for n in range(events):
        google.put_event(f"ev{n:04d}", summary=f"Event {n}")
    notion = FakeNotion(token=NOTION_TOKEN)
    notion.put_page("Roadmap", edited=NOW)
    user_id = add_user(db_engine, "ada@example.com")
    connect_calendar(db_engine, user_id, access="access-expired")
    connect_notion(db_engine, user_id)
    return google, notion, user_id


def test_calendar_and_notion_sync_over_a_real_local_http_server(
    db_engine: Engine, settings: Settings, policy: RequestRetryPolicy, clock: FakeClock
) -> None:
    google, notion, user_id = connected_user(db_engine, events=260)
    with serve_http(google) as google_url, serve_http(notion) as notion_url:
        real = settings.model_copy(
            update={
                "google_api_base_url": f"{google_url}/calendar/v3",
                "google_token_url": f"{google_url}/token",
                "notion_api_base_url": notion_url,
            }
        )
        with build_client(real) as client, Session(db_engine) as session:
            calendar = sync_calendar(
                session=session,
                user_id=user_id,
                client=client,
                settings=real,
                now=NOW,
                policy=policy,
            )
            pages = sync_notion(
                session=session,
                user_id=user_id,
                client=client,
                settings=real,
                limiter=RateLimiter(3, clock=clock.monotonic, sleep=clock.sleep),
                now=NOW,
                policy=policy,
            )
    assert (calendar.pages, calendar.upserted) == (2, 260)
    assert len(google.token_calls()) == 1  # the 401 and the refresh went over real HTTP
    assert pages.upserted == 1
    with Session(db_engine) as session:
        assert len(session.exec(select(CalendarEvent)).all()) == 260


def test_tokens_never_appear_in_logs_or_errors(
    db_engine: Engine,
    settings: Settings,
    policy: RequestRetryPolicy,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    google, notion, user_id = connected_user(db_engine, events=300)
    errors: list[str] = []
    with build_client(settings, transport=httpx.MockTransport(google)) as client:
        google.inject("events", 429, after=1, headers={"Retry-After": "1"})
        google.inject("events", 503, after=1, times=2)
        with Session(db_engine) as session:

            def sync_once() -> object:
                return sync_calendar(
                    session=session,
                    user_id=user_id,
                    client=client,
                    settings=settings,
                    now=NOW,
                    policy=policy,
                )

            try:
                sync_once()
            except TransientHTTPError as exc:
                errors.append(str(exc))
            sync_once()  # resumes with the page token
            google.expire_sync_tokens()
            sync_once()  # 410, then a full listing
            google.accept_access = False
            with pytest.raises(PermanentHTTPError) as refused:
                sync_once()
            errors.append(str(refused.value))
            conn = session.exec(select(CalendarConnection)).one()
    with build_client(settings, transport=httpx.MockTransport(notion)) as client:
        notion.inject(429, headers={"Retry-After": "1"}, code="rate_limited")
        with Session(db_engine) as session:
            sync_notion(
                session=session,
                user_id=user_id,
                client=client,
                settings=settings,
                limiter=RateLimiter(3, clock=clock.monotonic, sleep=clock.sleep),
                now=NOW,
                policy=policy,
            )

    secrets = {
        "access-expired",
        REFRESH,
        "client-secret",
        NOTION_TOKEN,
        *google.issued_access_tokens,
        *google.sync_tokens,
        *google.page_tokens,
        *notion.cursors,
    }
    assert conn.last_error and len(secrets) > 6
    logged = caplog.text + "\n".join(str(r.msg) for r in caplog.records) + "\n".join(errors)
    assert "sync_run_finished" in logged and "sync_http_retry" in logged
    leaked = [secret for secret in secrets if secret in logged or secret in conn.last_error]
    assert leaked == []


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (TransientHTTPError("busy", status_code=503), "transient_error"),
        (PermanentHTTPError("gone", status_code=404), "permanent_error"),
        (KeyError("a bug"), "error"),
    ],
)
def test_run_outcome_names_unexpected_exceptions_error(
    error: Exception, outcome: str, registry
) -> None:
    from bgworkers.sync.metrics import observe_run

    with pytest.raises(type(error)), observe_run("notion", 7):
        raise error
    labels = {"provider": "notion", "outcome": outcome}
    assert registry.get_sample_value("bgworkers_sync_runs_total", labels) == 1


def test_http_client_request_lines_lose_their_query_even_when_turned_up(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator who sets httpx to INFO to debug still gets no token out of the URL."""
    token = "page-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    with build_client(
        settings, transport=httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    ) as client:
        assert logging.getLogger("httpx").level == logging.WARNING
        assert logging.getLogger("httpcore").level == logging.WARNING
        logging.getLogger("httpx").setLevel(logging.INFO)
        try:
            with caplog.at_level(logging.DEBUG):
                client.get(f"https://api.example.test/v1/events?pageToken={token}&maxResults=5")
        finally:
            logging.getLogger("httpx").setLevel(logging.WARNING)
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines, "httpx logged no request line at INFO"
    assert all(token not in line and "maxResults" not in line for line in lines), lines
    assert any("api.example.test/v1/events?***" in line for line in lines), lines
