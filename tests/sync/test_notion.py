"""Notion sync against a fake of ``POST /v1/search`` that enforces the rate limit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.errors import PermanentHTTPError, TransientHTTPError
from bgworkers.settings import Settings
from bgworkers.sync.http import ReauthorizationRequired, build_client
from bgworkers.sync.models import STATUS_REAUTH_REQUIRED, NotionConnection, NotionPage
from bgworkers.sync.notion import sync_notion
from bgworkers.sync.ratelimit import RateLimiter
from tests.sync.fakes import FakeClock, FakeNotion
from tests.sync.helpers import add_user, connect_notion

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
EDITED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def notion_client(notion: FakeNotion, settings: Settings) -> Iterator[httpx.Client]:
    with build_client(settings, transport=httpx.MockTransport(notion)) as client:
        yield client


@pytest.fixture
def limiter(settings: Settings, clock: FakeClock) -> RateLimiter:
    return RateLimiter(
        settings.notion_requests_per_second, clock=clock.monotonic, sleep=clock.sleep
    )


@pytest.fixture
def user(db_engine: Engine) -> int:
    user_id = add_user(db_engine, "ada@example.com")
    connect_notion(db_engine, user_id)
    return user_id


def run(engine, user_id, client, settings, limiter, policy):  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return sync_notion(
            session=session,
            user_id=user_id,
            client=client,
            settings=settings,
            limiter=limiter,
            now=NOW,
            policy=policy,
        )


def pages(engine: Engine, user_id: int) -> dict[str, NotionPage]:
    with Session(engine) as session:
        rows = session.exec(select(NotionPage).where(NotionPage.user_id == user_id)).all()
        return {row.notion_id: row for row in rows}


def connection(engine: Engine, user_id: int) -> NotionConnection:
    with Session(engine) as session:
        return session.exec(
            select(NotionConnection).where(NotionConnection.user_id == user_id)
        ).one()


def fill(notion: FakeNotion, count: int) -> list[str]:
    return [
        notion.put_page(f"Page {n}", edited=EDITED - timedelta(minutes=n)) for n in range(count)
    ]


def test_pages_through_search_and_upserts_pages(
    db_engine: Engine, user: int, notion, notion_client, settings, limiter, policy, registry
) -> None:
    ids = fill(notion, 251)
    trashed = notion.put_page("Old plan", edited=EDITED, archived=True)  # search leaves it out

    result = run(db_engine, user, notion_client, settings, limiter, policy)

    bodies = [json.loads(call.content) for call in notion.calls]
    assert [b.get("start_cursor") is None for b in bodies] == [True, False, False]
    assert all(b["filter"] == {"property": "object", "value": "page"} for b in bodies)
    assert all(b["page_size"] == 100 for b in bodies)
    assert all(c.headers["Notion-Version"] == "2022-06-28" for c in notion.calls)
    assert (result.pages, result.upserted) == (3, 251)
    stored = pages(db_engine, user)
    assert len(stored) == 251
    first = stored[ids[0]]
    assert first.title == "Page 0" and first.url.startswith("https://www.notion.so/Page-0-")
    assert first.last_edited_time == EDITED and not first.archived
    assert trashed not in stored
    conn = connection(db_engine, user)
    assert conn.cursor is None and conn.last_synced_at == NOW
    assert registry.get_sample_value("bgworkers_sync_pages_total", {"provider": "notion"}) == 3

    notion.put_page("Renamed", edited=EDITED + timedelta(hours=1), page_id=ids[5])
    again = run(db_engine, user, notion_client, settings, limiter, policy)
    assert again.upserted == 251
    stored = pages(db_engine, user)
    assert len(stored) == 251 and stored[ids[5]].title == "Renamed"


def test_client_side_rate_limit_keeps_requests_under_the_limit(
    db_engine: Engine, user: int, notion, notion_client, settings, limiter, policy, clock, registry
) -> None:
    fill(notion, 1000)  # ten requests in a row

    run(db_engine, user, notion_client, settings, limiter, policy)

    assert len(notion.calls) == 10 and notion.rate_limited == 0
    gaps = [b - a for a, b in zip(notion.call_times, notion.call_times[1:], strict=False)]
    rate = settings.notion_requests_per_second  # 2.5 by default: under Notion's 3
    assert min(gaps) >= 1 / rate - 1e-9
    assert clock.now - 1000.0 == pytest.approx(9 / rate)
    assert registry.get_sample_value(
        "bgworkers_sync_rate_limit_wait_seconds_total", {"provider": "notion"}
    ) == pytest.approx(9 / rate)


def test_429_from_notion_pauses_the_run_for_retry_after_without_sleeping(
    db_engine: Engine, user: int, notion, notion_client, settings, policy, clock
) -> None:
    fill(notion, 150)
    unlimited = RateLimiter(1000.0, clock=clock.monotonic, sleep=clock.sleep)

    first = run(db_engine, user, notion_client, settings, unlimited, policy)

    # Without client-side spacing the fake rejects the burst: the run stops after its
    # committed page and says when to come back (Retry-After: 1), no thread sleeps on it.
    assert notion.rate_limited == 1
    assert (first.outcome, first.resume_after_s, first.upserted) == ("paused", 1.0, 100)
    assert 1.0 not in clock.sleeps
    clock.sleep(1.0)  # the run sent again for after the pause
    second = run(db_engine, user, notion_client, settings, unlimited, policy)
    assert (second.outcome, second.upserted) == ("completed", 50)  # resumed at its cursor
    assert len(pages(db_engine, user)) == 150


def test_failure_half_way_resumes_from_the_committed_cursor(
    db_engine: Engine, user: int, notion, notion_client, settings, limiter, policy
) -> None:
    fill(notion, 350)
    notion.inject(502, after=2, times=3, code="service_unavailable")

    with pytest.raises(TransientHTTPError):
        run(db_engine, user, notion_client, settings, limiter, policy)

    assert len(pages(db_engine, user)) == 200
    cursor = connection(db_engine, user).cursor
    assert cursor in notion.cursors

    result = run(db_engine, user, notion_client, settings, limiter, policy)

    assert json.loads(notion.calls[5].content)["start_cursor"] == cursor
    assert (result.pages, result.upserted) == (2, 150)
    assert len(pages(db_engine, user)) == 350 and connection(db_engine, user).cursor is None


def test_expired_stored_cursor_restarts_the_listing(
    db_engine: Engine, user: int, notion, notion_client, settings, limiter, policy, registry
) -> None:
    fill(notion, 120)
    with Session(db_engine) as session:
        conn = session.exec(select(NotionConnection)).one()
        conn.cursor = "cursor-from-last-week"
        session.add(conn)
        session.commit()

    result = run(db_engine, user, notion_client, settings, limiter, policy)

    assert result.upserted == 120 and len(pages(db_engine, user)) == 120
    assert (
        registry.get_sample_value(
            "bgworkers_sync_full_resyncs_total", {"provider": "notion", "reason": "stale_cursor"}
        )
        == 1
    )


def test_401_marks_the_connection_for_reauthorization(
    db_engine: Engine, notion, notion_client, settings, limiter, policy
) -> None:
    revoked = add_user(db_engine, "bob@example.com")
    connect_notion(db_engine, revoked, token="secret_revoked")
    fine = add_user(db_engine, "carol@example.com")
    connect_notion(db_engine, fine)
    fill(notion, 3)

    with pytest.raises(ReauthorizationRequired):
        run(db_engine, revoked, notion_client, settings, limiter, policy)

    assert connection(db_engine, revoked).status == STATUS_REAUTH_REQUIRED
    assert run(db_engine, fine, notion_client, settings, limiter, policy).upserted == 3


def test_other_4xx_is_permanent_and_not_retried(
    db_engine: Engine, user: int, notion, notion_client, settings, limiter, policy, clock
) -> None:
    notion.inject(400, code="validation_error")
    with pytest.raises(PermanentHTTPError, match="validation_error"):
        run(db_engine, user, notion_client, settings, limiter, policy)
    assert len(notion.calls) == 1 and clock.sleeps == []
    assert connection(db_engine, user).last_error == "notion search: HTTP 400 (validation_error)"


def test_pages_archived_or_unshared_after_a_sync_are_marked_archived(
    db_engine: Engine, user: int, notion, notion_client, settings, limiter, policy, registry
) -> None:
    ids = fill(notion, 150)  # two pages of results
    run(db_engine, user, notion_client, settings, limiter, policy)
    assert not any(page.archived for page in pages(db_engine, user).values())

    notion.archive_page(ids[3])
    notion.unshare_page(ids[120])
    result = run(db_engine, user, notion_client, settings, limiter, policy)

    stored = pages(db_engine, user)
    assert len(stored) == 150
    assert {i for i, page in stored.items() if page.archived} == {ids[3], ids[120]}
    assert result.archived == 2
    assert (
        registry.get_sample_value(
            "bgworkers_sync_items_total", {"provider": "notion", "action": "archived"}
        )
        == 2
    )

    notion.restore_page(ids[3])
    again = run(db_engine, user, notion_client, settings, limiter, policy)
    stored = pages(db_engine, user)
    assert {i for i, page in stored.items() if page.archived} == {ids[120]}
    assert again.archived == 0


def test_an_interrupted_listing_archives_nothing_until_it_completes(
    db_engine: Engine, user: int, notion, notion_client, settings, limiter, policy
) -> None:
    ids = fill(notion, 250)  # three pages of results
    run(db_engine, user, notion_client, settings, limiter, policy)
    notion.archive_page(ids[0])
    notion.inject(503, after=1, times=10)  # the second page keeps failing

    with pytest.raises(TransientHTTPError):
        run(db_engine, user, notion_client, settings, limiter, policy)
    assert not any(page.archived for page in pages(db_engine, user).values())

    notion.injected.clear()
    resumed = run(db_engine, user, notion_client, settings, limiter, policy)
    assert resumed.pages == 2  # resumed from the committed cursor, not from the start
    stored = pages(db_engine, user)
    assert {i for i, page in stored.items() if page.archived} == {ids[0]}


def test_a_malformed_page_fails_only_itself_and_is_not_archived(
    db_engine: Engine, user: int, notion, notion_client, settings, limiter, policy, registry
) -> None:
    ids = fill(notion, 3)
    run(db_engine, user, notion_client, settings, limiter, policy)
    # The page is still listed, but with an edit time that cannot be parsed: it is counted
    # as malformed and keeps its row as it was; the other pages are updated beside it, and
    # a complete listing does not take it for gone.
    notion.pages[ids[1]]["last_edited_time"] = "yesterday"
    notion.put_page("Renamed", edited=EDITED + timedelta(hours=1), page_id=ids[0])
    result = run(db_engine, user, notion_client, settings, limiter, policy)

    assert (result.upserted, result.malformed, result.archived) == (2, 1, 0)
    stored = pages(db_engine, user)
    assert stored[ids[0]].title == "Renamed"
    assert stored[ids[1]].title == "Page 1" and not stored[ids[1]].archived
    assert stored[ids[1]].sync_generation == connection(db_engine, user).generation
    assert (
        registry.get_sample_value(
            "bgworkers_sync_items_total", {"provider": "notion", "action": "malformed"}
        )
        == 1
    )
