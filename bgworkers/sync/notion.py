"""Notion sync: ``POST /v1/search`` for pages, paged with ``start_cursor``/``has_more``.

Each run lists every page the user shared with the integration (Notion's search has no
"changed since" filter) and upserts title, URL, last-edited time and archived state. The
search leaves out trashed (archived) and unshared pages rather than reporting them, so every
listing stamps the pages it sees with the connection's new ``generation``, and a complete
listing marks the user's pages of older generations archived. The
cursor of the listing is committed with each page of results, so a run that stops half-way
resumes there. Requests go through the connection's shared rate limit (Notion allows an
average of three requests per second per connection; :mod:`bgworkers.sync.limits`), which a
429 pauses for every process, and carry the ``Notion-Version`` header from settings.

Notion tokens do not expire and cannot be refreshed: a 401 means the user revoked access,
so the connection is marked ``reauth_required`` and the error is permanent for that user.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from sqlalchemy import bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from bgworkers.errors import PermanentHTTPError
from bgworkers.logs.loggers import get_logger
from bgworkers.settings import Settings
from bgworkers.sync.connection_sync import run_connection_sync
from bgworkers.sync.http import (
    AuthenticationFailed,
    ReauthorizationRequired,
    RequestRetryPolicy,
    json_object,
    send,
)
from bgworkers.sync.metrics import SYNC_METRICS
from bgworkers.sync.models import NotionConnection, NotionPage
from bgworkers.sync.shared_limits import Throttle

log = get_logger(__name__)

PROVIDER: Final = "notion"
#: Results per request; Notion's maximum.
PAGE_SIZE: Final = 100


class MalformedPage(ValueError):
    """A search result without an id or a parsable ``last_edited_time``; skipped and counted."""


@dataclass
class NotionSyncResult:
    user_id: int
    outcome: str = "completed"  # completed, skipped, superseded, yielded or paused
    resume_after_s: float = 0.0  # paused: seconds until the credential's pause ends
    pages: int = 0
    upserted: int = 0
    archived: int = 0  # pages no longer listed, marked archived
    malformed: int = 0


def sync_notion(
    *,
    session: Session,
    user_id: int,
    client: httpx.Client,
    settings: Settings,
    now: datetime,
    policy: RequestRetryPolicy,
    limiter: Throttle | None = None,
    throttle_for: Callable[[str], Throttle] | None = None,
    should_yield: Callable[[], bool] | None = None,
    resuming: bool = False,
) -> NotionSyncResult:
    """Upsert the user's Notion pages; commit after every page of results.

    Requests wait for ``limiter``, or for ``throttle_for(token)`` (the connection's shared
    limit). When ``should_yield()`` turns true after a committed page and more pages remain,
    the run stops with outcome ``yielded``: the caller queues the rest behind other users'
    work (fair share). Errors and ``resuming`` as in
    :func:`bgworkers.sync.google_calendar.sync_calendar`.
    """
    result = NotionSyncResult(user_id=user_id)

    def sync_pages(connection: NotionConnection) -> None:
        throttle = limiter or _throttle(throttle_for, connection.access_token)
        _sync_pages(
            session,
            connection,
            client,
            settings,
            throttle,
            policy,
            now=now,
            result=result,
            should_yield=should_yield or _never,
        )

    return run_connection_sync(
        session=session,
        model=NotionConnection,
        provider=PROVIDER,
        result=result,
        now=now,
        reauth_error=AuthenticationFailed,
        sync_pages=sync_pages,
        resuming=resuming,
    )


def _never() -> bool:
    return False


def _throttle(throttle_for: Callable[[str], Throttle] | None, token: str) -> Throttle:
    if throttle_for is None:
        raise TypeError("sync_notion needs a limiter or throttle_for")
    return throttle_for(token)


def _sync_pages(
    session: Session,
    connection: NotionConnection,
    client: httpx.Client,
    settings: Settings,
    limiter: Throttle,
    policy: RequestRetryPolicy,
    *,
    now: datetime,
    result: NotionSyncResult,
    should_yield: Callable[[], bool],
) -> None:
    metrics = SYNC_METRICS.get()
    restarted = False
    while True:
        cursor = connection.cursor
        try:
            body = _search(client, settings, limiter, policy, connection.access_token, cursor)
        except PermanentHTTPError as exc:
            # A stored cursor from an earlier run may have expired (400): list from the start.
            if exc.status_code != 400 or cursor is None or restarted or result.pages:
                raise
            restarted = True
            log.info("notion_cursor_rejected", user_id=connection.user_id)
            metrics.full_resyncs.labels(PROVIDER, "stale_cursor").inc()
            connection.cursor = None
            session.add(connection)
            session.commit()
            continue
        session.refresh(connection, with_for_update=True)
        if connection.cursor != cursor:
            session.rollback()  # another delivery of this user's message moved on meanwhile
            result.outcome = "superseded"
            return
        if cursor is None:
            connection.generation += 1  # a new listing: pages it does not see are gone
        results = body.get("results")
        _apply_results(
            session,
            connection,
            results if isinstance(results, list) else [],
            now=now,
            result=result,
        )
        next_cursor = body.get("next_cursor")
        has_more = bool(body.get("has_more")) and bool(next_cursor)
        connection.cursor = str(next_cursor) if has_more else None
        if not has_more:
            _archive_unseen(session, connection, now=now, result=result)
            connection.last_synced_at = now
        connection.updated_at = now
        session.add(connection)
        session.commit()
        result.pages += 1
        metrics.pages.labels(PROVIDER).inc()
        if not has_more:
            return
        if should_yield():
            result.outcome = "yielded"
            return


def _archive_unseen(
    session: Session, connection: NotionConnection, *, now: datetime, result: NotionSyncResult
) -> None:
    """Mark archived the user's pages a complete listing did not return (trashed, unshared)."""
    params = {"b_user": connection.user_id, "b_generation": connection.generation, "b_now": now}
    with session.no_autoflush:  # the generation it compares with is the Python value
        outcome = session.execute(_ARCHIVE_UNSEEN, params)
    archived = int(getattr(outcome, "rowcount", 0) or 0)
    result.archived += archived
    SYNC_METRICS.get().items.labels(PROVIDER, "archived").inc(archived)


def _search(
    client: httpx.Client,
    settings: Settings,
    limiter: Throttle,
    policy: RequestRetryPolicy,
    token: str,
    cursor: str | None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "filter": {"property": "object", "value": "page"},
        "sort": {"direction": "descending", "timestamp": "last_edited_time"},
        "page_size": PAGE_SIZE,
    }
    if cursor:
        payload["start_cursor"] = cursor
    url = str(settings.notion_api_base_url).rstrip("/") + "/v1/search"
    headers = {
        "Authorization": f"Bearer {token}",
        "Notion-Version": settings.notion_version,
        "Content-Type": "application/json",
    }
    metrics = SYNC_METRICS.get()

    def wait_for_slot() -> None:
        metrics.rate_limit_wait.labels(PROVIDER).inc(limiter.acquire())

    def build() -> httpx.Request:
        return client.build_request("POST", url, json=payload, headers=headers)

    try:
        response = send(
            client,
            build,
            operation="notion search",
            provider=PROVIDER,
            policy=policy,
            before_attempt=wait_for_slot,
            on_rate_limited=limiter.pause,
        )
    except AuthenticationFailed as exc:
        raise ReauthorizationRequired(str(exc), status_code=exc.status_code) from None
    return json_object(response, operation="notion search")


def _apply_results(
    session: Session,
    connection: NotionConnection,
    results: Iterable[Any],
    *,
    now: datetime,
    result: NotionSyncResult,
) -> None:
    """Upsert a page of search results in one statement, stamped with the listing's generation.

    One ``INSERT ... ON CONFLICT DO UPDATE`` on (user, Notion id) instead of reading the
    user's pages and writing ORM objects: a round trip and most of the CPU of a short sync.
    A listed page that could not be parsed keeps its row and is only re-stamped (still shared,
    so not archived).
    """
    metrics = SYNC_METRICS.get()
    parsed: dict[str, dict[str, Any]] = {}
    listed: set[str] = set()  # ids seen, malformed ones included: still there, not archived
    for item in results:
        if not isinstance(item, Mapping) or item.get("object") != "page":
            continue  # the filter asks for pages; anything else is ignored
        if isinstance(item.get("id"), str):
            listed.add(str(item["id"])[:64])
        try:
            fields = parse_page(item)
        except MalformedPage as exc:
            result.malformed += 1
            metrics.items.labels(PROVIDER, "malformed").inc()
            log.warning("notion_page_malformed", user_id=connection.user_id, error=str(exc)[:200])
            continue
        parsed[fields["notion_id"]] = fields
    unparsed = listed - set(parsed)
    with session.no_autoflush:  # the connection's row is written once, at the page's commit
        if unparsed:
            session.execute(
                _RESTAMP,
                {
                    "b_user": connection.user_id,
                    "b_ids": sorted(unparsed),
                    "b_generation": connection.generation,
                },
            )
        if parsed:
            rows = [
                {
                    **fields,
                    "user_id": connection.user_id,
                    "sync_generation": connection.generation,
                    "updated_at": now,
                }
                for fields in parsed.values()
            ]
            session.execute(_upsert_pages(session.get_bind().dialect.name), rows)
    result.upserted += len(parsed)
    metrics.items.labels(PROVIDER, "upserted").inc(len(parsed))


#: Statements on the table itself (Core), built once: ORM-enabled bulk statements were
#: compiled again for every page and cost more CPU than the rest of a short sync.
_PAGES = NotionPage.__table__  # type: ignore[attr-defined]
_ARCHIVE_UNSEEN = (
    update(_PAGES)
    .where(
        _PAGES.c.user_id == bindparam("b_user"),
        _PAGES.c.sync_generation < bindparam("b_generation"),
        _PAGES.c.archived.is_(False),
    )
    .values(archived=True, updated_at=bindparam("b_now"))
)
_RESTAMP = (
    update(_PAGES)
    .where(
        _PAGES.c.user_id == bindparam("b_user"),
        _PAGES.c.notion_id.in_(bindparam("b_ids", expanding=True)),
    )
    .values(sync_generation=bindparam("b_generation"))
)


@functools.cache
def _upsert_pages(dialect_name: str) -> Any:
    """``INSERT ... ON CONFLICT (user_id, notion_id) DO UPDATE`` for ``dialect_name``."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    statement = dialect.insert(_PAGES)
    replaced = ("title", "url", "last_edited_time", "archived", "sync_generation", "updated_at")
    return statement.on_conflict_do_update(
        index_elements=["user_id", "notion_id"],
        set_={name: statement.excluded[name] for name in replaced},
    )


def parse_page(item: Mapping[str, Any]) -> dict[str, Any]:
    """The columns of a Notion page object (title from its ``title``-typed property)."""
    notion_id = item.get("id")
    if not notion_id or not isinstance(notion_id, str):
        raise MalformedPage("page without an id")
    try:
        edited = datetime.fromisoformat(str(item.get("last_edited_time")))
    except ValueError:
        raise MalformedPage(f"page {notion_id[:64]!r} has no valid last_edited_time") from None
    if edited.tzinfo is None:
        edited = edited.replace(tzinfo=UTC)
    return {
        "notion_id": notion_id[:64],
        "title": _title(item.get("properties"))[:2000],
        "url": str(item.get("url") or "")[:2048],
        "last_edited_time": edited.astimezone(UTC),
        "archived": bool(item.get("archived") or item.get("in_trash")),
    }


def _title(properties: Any) -> str:
    """Plain text of the page's title property, whatever it is named (``title``, ``Name``)."""
    if not isinstance(properties, Mapping):
        return ""
    for prop in properties.values():
        if isinstance(prop, Mapping) and prop.get("type") == "title":
            parts = prop.get("title") or []
            return "".join(
                str(part.get("plain_text", "")) for part in parts if isinstance(part, Mapping)
            )
    return ""
