"""Canary tokens: a provider that echoes the credential it was sent in its error fields.

Google's ``errors[].reason``, the OAuth endpoint's ``error`` and Notion's ``code`` are copied
into the error text, the log and ``*_connections.last_error`` (and so into backups): the
credential in use must be scrubbed out first, whatever the text around it.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.errors import BgworkersError
from bgworkers.files.archive import run_id_for
from bgworkers.files.backup import backup_user
from bgworkers.settings import Settings
from bgworkers.sync.google_calendar import sync_calendar
from bgworkers.sync.http import build_client
from bgworkers.sync.models import CalendarConnection, NotionConnection
from bgworkers.sync.notion import sync_notion
from bgworkers.sync.ratelimit import RateLimiter
from bgworkers.users.models import User
from tests.platform_helpers import captured_json_logs
from tests.sync.fakes import FakeNotion
from tests.sync.helpers import (
    ACCESS,
    NOTION_TOKEN,
    REFRESH,
    add_user,
    connect_calendar,
    connect_notion,
)

pytestmark = pytest.mark.usefixtures("clock")
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
RUN_ID = run_id_for(NOW)


@pytest.fixture
def notion_client(notion: FakeNotion, settings: Settings) -> Iterator[httpx.Client]:
    with build_client(settings, transport=httpx.MockTransport(notion)) as client:
        yield client


def last_errors(engine: Engine) -> list[str | None]:
    with Session(engine) as session:
        calendar = session.exec(select(CalendarConnection.last_error)).all()
        notion = session.exec(select(NotionConnection.last_error)).all()
    return [*calendar, *notion]


def archived_bytes(engine: Engine, backup_dir: Path) -> bytes:
    """Every byte of fresh backups of every user (tar members, uncompressed)."""
    out = io.BytesIO()
    with Session(engine) as session:
        for user_id in session.exec(select(User.id)).all():
            assert user_id is not None
            result = backup_user(
                session=session,
                user_id=user_id,
                run_id=RUN_ID,
                backup_dir=backup_dir,
                keep=4,
                now=NOW,
            )
            session.commit()
            assert result.path is not None
            with tarfile.open(result.path) as archive:
                for member in archive.getmembers():
                    extracted = archive.extractfile(member)
                    if extracted is not None:
                        out.write(extracted.read())
    return out.getvalue()


def failed_sync(
    engine: Engine, run: Callable[[Session], object]
) -> tuple[BgworkersError, list[dict[str, Any]]]:
    """Run one sync that must fail; return its error and the log lines it wrote."""
    with (
        captured_json_logs() as logs,
        pytest.raises(BgworkersError) as caught,
        Session(engine) as session,
    ):
        run(session)
    return caught.value, logs


def assert_nowhere(
    canary: str, error: BaseException, logs: list[dict[str, Any]], engine: Engine, tmp: Path
) -> None:
    assert canary not in str(error) and canary not in repr(error)
    assert error.__cause__ is None or canary not in str(error.__cause__)
    assert canary not in repr(logs)
    assert all(canary not in (text or "") for text in last_errors(engine))
    assert any(last_errors(engine))  # the error was recorded, without the canary
    assert canary.encode() not in archived_bytes(engine, tmp)


@pytest.mark.parametrize("reason", [ACCESS, f"{ACCESS}:{ACCESS}", f"bad token {ACCESS} given"])
def test_google_reason_echoing_the_access_token(
    sqlite_engine: Engine, tmp_path: Path, google, google_client, settings, policy, reason: str
) -> None:
    user_id = add_user(sqlite_engine, "ada@example.com")
    connect_calendar(sqlite_engine, user_id)
    google.inject("events", 400, reason=reason)
    error, logs = failed_sync(
        sqlite_engine,
        lambda session: sync_calendar(
            session=session,
            user_id=user_id,
            client=google_client,
            settings=settings,
            now=NOW,
            policy=policy,
        ),
    )
    assert "HTTP 400" in str(error)
    assert_nowhere(ACCESS, error, logs, sqlite_engine, tmp_path)


@pytest.mark.parametrize("canary", [REFRESH, "client-secret"])
def test_oauth_error_echoing_the_refresh_token_or_client_secret(
    sqlite_engine: Engine, tmp_path: Path, google, google_client, settings, policy, canary: str
) -> None:
    user_id = add_user(sqlite_engine, "bob@example.com")
    connect_calendar(sqlite_engine, user_id, access="access-expired")
    google.inject("token", 400, body={"error": canary})
    error, logs = failed_sync(
        sqlite_engine,
        lambda session: sync_calendar(
            session=session,
            user_id=user_id,
            client=google_client,
            settings=settings,
            now=NOW,
            policy=policy,
        ),
    )
    assert_nowhere(canary, error, logs, sqlite_engine, tmp_path)


def test_notion_code_echoing_the_integration_token(
    sqlite_engine: Engine,
    tmp_path: Path,
    notion,
    notion_client,
    settings,
    policy,
    clock,
) -> None:
    user_id = add_user(sqlite_engine, "cy@example.com")
    connect_notion(sqlite_engine, user_id)
    notion.inject(400, code=NOTION_TOKEN)
    limiter = RateLimiter(100, clock=clock.monotonic, sleep=clock.sleep)
    error, logs = failed_sync(
        sqlite_engine,
        lambda session: sync_notion(
            session=session,
            user_id=user_id,
            client=notion_client,
            settings=settings,
            limiter=limiter,
            now=NOW,
            policy=policy,
        ),
    )
    assert "HTTP 400" in str(error)
    assert_nowhere(NOTION_TOKEN, error, logs, sqlite_engine, tmp_path)
