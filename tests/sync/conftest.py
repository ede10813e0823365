"""Fixtures of the sync tests: fake APIs, settings aimed at them, users with connections."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bgworkers.settings import Settings, load_settings
from bgworkers.sync.http import RequestRetryPolicy, build_client
from tests.sync.fakes import FakeClock, FakeGoogleCalendar, FakeNotion
from tests.sync.helpers import (
    NOTION_TOKEN,
)


@pytest.fixture
def settings() -> Settings:
    return load_settings(
        google_client_id="client-id",
        google_client_secret="client-secret",
        google_api_base_url="https://www.googleapis.com/calendar/v3",
        google_token_url="https://oauth2.googleapis.com/token",
        notion_api_base_url="https://api.notion.com",
        notion_version="2022-06-28",
        sync_http_max_attempts=3,
        sync_http_max_inline_wait_s=5,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def policy(settings: Settings, clock: FakeClock) -> RequestRetryPolicy:
    return RequestRetryPolicy(
        max_attempts=settings.sync_http_max_attempts,
        max_inline_wait_s=settings.sync_http_max_inline_wait_s,
        sleep=clock.sleep,
    )


@pytest.fixture
def google() -> FakeGoogleCalendar:
    return FakeGoogleCalendar()


@pytest.fixture
def google_client(google: FakeGoogleCalendar, settings: Settings) -> Iterator[httpx.Client]:
    with build_client(settings, transport=httpx.MockTransport(google)) as client:
        yield client


@pytest.fixture
def notion(clock: FakeClock) -> FakeNotion:
    return FakeNotion(token=NOTION_TOKEN, clock=clock)
