"""Google Calendar sync: ``events.list`` with sync tokens, pages and one token refresh per run.

The protocol, as Google documents it: a full listing (no ``syncToken``) pages through every
live event with ``pageToken`` and ends with a ``nextSyncToken``; later listings send that
token and receive only what changed, deletions included as ``status: "cancelled"``. When the
token has expired Google answers ``410 Gone`` and the client must list everything again.

Our progress (sync token, next page token) is committed with each page, so a run that stops
half-way resumes where it stopped. A full listing reports no deletions, so it stamps every
event it sees with the connection's new ``generation`` and, once complete, deletes the
user's events of older generations.

Only the connection's own user is affected by its errors: a refused token marks the
connection ``reauth_required`` and raises a permanent error for this message alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from urllib.parse import quote

import httpx
from sqlmodel import Session

from bgworkers.db.engine import insert_with_on_conflict
from bgworkers.errors import PermanentHTTPError
from bgworkers.logs.loggers import get_logger
from bgworkers.settings import Settings
from bgworkers.sync.connection_sync import run_connection_sync
from bgworkers.sync.http import (
    AuthenticationFailed,
    ReauthorizationRequired,
    RequestRetryPolicy,
    ResourceGone,
    UnexpectedResponse,
    json_object,
    send,
)
from bgworkers.sync.metrics import SYNC_METRICS
from bgworkers.sync.models import CalendarConnection, CalendarEvent
from bgworkers.sync.shared_limits import Throttle

log = get_logger(__name__)

PROVIDER: Final = "google_calendar"
#: Events per page; Google's default and the size the benchmark mimics (its maximum is 2500).
PAGE_SIZE: Final = 250
_TITLE_MAX = 1024


class MalformedEvent(ValueError):
    """An event without a usable start; skipped (and counted), never fatal to the sync."""


@dataclass
class CalendarSyncResult:
    user_id: int
    outcome: str = "completed"  # completed, skipped, superseded, yielded or paused
    resume_after_s: float = 0.0  # paused: seconds until the credential's pause ends
    pages: int = 0
    upserted: int = 0
    removed: int = 0
    malformed: int = 0
    full_sync: bool = False


def sync_calendar(
    *,
    session: Session,
    user_id: int,
    client: httpx.Client,
    settings: Settings,
    now: datetime,
    policy: RequestRetryPolicy,
    limiter: Throttle | None = None,
    should_yield: Callable[[], bool] | None = None,
    resuming: bool = False,
) -> CalendarSyncResult:
    """Bring the user's stored events up to date with Google; commit after every page.

    Each events request waits for ``limiter`` (the user's and the project's shared quota),
    which a rate-limit answer pauses. When ``should_yield()`` turns true after a committed
    page and more pages remain, the run stops with outcome ``yielded`` (the caller queues the
    rest behind other users' work). Raises :class:`~bgworkers.errors.TransientError` for what
    a later retry may fix (the pages committed so far stay) and
    :class:`~bgworkers.errors.PermanentError` for what it cannot (recorded on the connection
    first). ``resuming``: the run is a paused chain's own message
    (:func:`~bgworkers.sync.connection_sync.run_connection_sync`).
    """
    result = CalendarSyncResult(user_id=user_id)

    def sync_pages(connection: CalendarConnection) -> None:
        api = _CalendarApi(
            client=client, settings=settings, policy=policy, now=now, limiter=limiter
        )
        _sync_pages(session, connection, api, now=now, result=result, should_yield=should_yield)

    return run_connection_sync(
        session=session,
        model=CalendarConnection,
        provider=PROVIDER,
        result=result,
        now=now,
        reauth_error=ReauthorizationRequired,
        sync_pages=sync_pages,
        resuming=resuming,
    )


def _sync_pages(
    session: Session,
    connection: CalendarConnection,
    api: _CalendarApi,
    *,
    now: datetime,
    result: CalendarSyncResult,
    should_yield: Callable[[], bool] | None,
) -> None:
    gone_seen = page_token_dropped = False
    while True:
        sync_token, page_token = connection.sync_token, connection.page_token
        full = sync_token is None
        try:
            body = api.list_events(
                session, connection, sync_token=sync_token, page_token=page_token
            )
        except ResourceGone:
            if gone_seen or (full and page_token is None):
                raise
            gone_seen = True
            _restart_full(session, connection, now=now, result=result)
            continue
        except PermanentHTTPError as exc:
            # A page token stored by an earlier run may no longer be accepted (400); resuming
            # with it would fail every hour, so drop it and list again from the sync token.
            if exc.status_code != 400 or page_token is None or page_token_dropped or result.pages:
                raise
            page_token_dropped = True
            _drop_page_token(session, connection, now=now)
            continue
        session.refresh(connection, with_for_update=True)
        if (connection.sync_token, connection.page_token) != (sync_token, page_token):
            # Another delivery of this user's message moved the progress meanwhile: let it finish.
            session.rollback()
            result.outcome = "superseded"
            return
        if full and page_token is None:
            connection.generation += 1
            SYNC_METRICS.get().full_resyncs.labels(PROVIDER, "initial").inc()
        result.full_sync = result.full_sync or full
        _apply_items(session, connection, body.get("items") or [], now=now, result=result)
        next_page = body.get("nextPageToken")
        if next_page:
            connection.page_token = str(next_page)
        else:
            _finish_listing(session, connection, body, full=full, now=now, result=result)
        connection.updated_at = now
        session.add(connection)
        session.commit()
        result.pages += 1
        SYNC_METRICS.get().pages.labels(PROVIDER).inc()
        if not next_page:
            return
        if should_yield is not None and should_yield():
            result.outcome = "yielded"
            return


def _restart_full(
    session: Session, connection: CalendarConnection, *, now: datetime, result: CalendarSyncResult
) -> None:
    log.info("calendar_sync_token_expired", user_id=connection.user_id)
    SYNC_METRICS.get().full_resyncs.labels(PROVIDER, "gone").inc()
    connection.sync_token = None
    connection.page_token = None
    connection.updated_at = now
    session.add(connection)
    session.commit()


def _drop_page_token(session: Session, connection: CalendarConnection, *, now: datetime) -> None:
    log.info("calendar_page_token_rejected", user_id=connection.user_id)
    if connection.sync_token is None:
        SYNC_METRICS.get().full_resyncs.labels(PROVIDER, "stale_page_token").inc()
    connection.page_token = None
    connection.updated_at = now
    session.add(connection)
    session.commit()


def _finish_listing(
    session: Session,
    connection: CalendarConnection,
    body: Mapping[str, Any],
    *,
    full: bool,
    now: datetime,
    result: CalendarSyncResult,
) -> None:
    token = body.get("nextSyncToken")
    if not token:
        raise UnexpectedResponse("calendar events.list: last page without nextSyncToken")
    if full:
        stale = session.execute(
            EVENTS.delete().where(
                EVENTS.c.user_id == connection.user_id,
                EVENTS.c.calendar_id == connection.calendar_id,
                EVENTS.c.sync_generation < connection.generation,
            )
        )
        removed = int(stale.rowcount or 0)  # type: ignore[attr-defined]
        result.removed += removed
        SYNC_METRICS.get().items.labels(PROVIDER, "removed").inc(removed)
    connection.sync_token = str(token)
    connection.page_token = None
    connection.last_synced_at = now


def _apply_items(
    session: Session,
    connection: CalendarConnection,
    items: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    result: CalendarSyncResult,
) -> None:
    """Upsert live events and delete cancelled ones: one statement each for the whole page.

    Core ``INSERT ... ON CONFLICT DO UPDATE`` on the (user, calendar, event) key instead of
    loading and flushing ORM objects, which was most of a user's sync CPU.
    """
    metrics = SYNC_METRICS.get()
    page = event_rows(
        items,
        user_id=connection.user_id,
        calendar_id=connection.calendar_id,
        generation=connection.generation,
        now=now,
    )
    result.malformed += page.malformed
    rows, cancelled = page.rows, page.cancelled
    if not rows and not cancelled:
        return
    if rows:
        session.execute(events_upsert(session.get_bind().dialect.name), rows)
        result.upserted += len(rows)
    removed = 0
    if cancelled:
        removed = len(
            session.execute(
                EVENTS.delete()
                .where(
                    EVENTS.c.user_id == connection.user_id,
                    EVENTS.c.calendar_id == connection.calendar_id,
                    EVENTS.c.external_id.in_(cancelled),
                )
                .returning(EVENTS.c.id)
            ).all()
        )
    result.removed += removed
    listed = len(rows) + len(cancelled) + page.malformed
    metrics.items.labels(PROVIDER, "upserted").inc(listed - removed)
    metrics.items.labels(PROVIDER, "removed").inc(removed)


@dataclass
class EventRows:
    """One page of a user's events as rows: live ones to upsert, cancelled ids to delete."""

    rows: list[dict[str, Any]]
    cancelled: list[str]
    malformed: int = 0


def event_rows(
    items: Iterable[Any], *, user_id: int, calendar_id: str, generation: int, now: datetime
) -> EventRows:
    """The rows of one page of ``events.list`` items; a later copy of an id wins, and a
    malformed event is skipped (logged and counted) without failing the page."""
    latest: dict[str, Mapping[str, Any]] = {}
    for item in items:
        if isinstance(item, Mapping) and item.get("id"):
            latest[str(item["id"])] = item
    page = EventRows(rows=[], cancelled=[])
    key = {"user_id": user_id, "calendar_id": calendar_id}
    for external_id, item in latest.items():
        if item.get("status") == "cancelled":
            page.cancelled.append(external_id)
            continue
        try:
            fields = parse_event(item)
        except MalformedEvent as exc:
            page.malformed += 1
            SYNC_METRICS.get().items.labels(PROVIDER, "malformed").inc()
            log.warning("calendar_event_malformed", user_id=user_id, error=str(exc)[:200])
            continue
        page.rows.append(
            {**key, "external_id": external_id, **fields,
             "sync_generation": generation, "updated_at": now}
        )  # fmt: skip
    return page


EVENTS = CalendarEvent.__table__  # type: ignore[attr-defined]
_KEY = ("user_id", "calendar_id", "external_id")
#: What an upsert writes over an existing row: the fields of :func:`parse_event` and ours.
_CHANGED = (
    "title",
    "starts_at",
    "ends_at",
    "all_day",
    "status",
    "remote_updated_at",
    "sync_generation",
    "updated_at",
)


@functools.cache
def events_upsert(dialect: str) -> Any:
    """The page's upsert, built once per dialect and run as an executemany of the rows
    (one compiled statement, cached; a multi-row VALUES was compiled again for every page)."""
    statement = insert_with_on_conflict(dialect)(EVENTS)
    changed = {name: statement.excluded[name] for name in _CHANGED}
    return statement.on_conflict_do_update(index_elements=list(_KEY), set_=changed)


def parse_event(item: Mapping[str, Any]) -> dict[str, Any]:
    """The columns of a live Google event; raises :class:`MalformedEvent` without a start."""
    start, all_day = _parse_when(item.get("start"))
    if start is None:
        raise MalformedEvent(f"event {str(item.get('id'))[:64]!r} has no usable start")
    end, _ = _parse_when(item.get("end"))
    status = item.get("status") or "confirmed"
    return {
        "title": str(item.get("summary") or "")[:_TITLE_MAX],
        "starts_at": start,
        "ends_at": end,
        "all_day": all_day,
        "status": str(status)[:16],
        "remote_updated_at": _parse_instant(item.get("updated")),
    }


def _parse_when(value: Any) -> tuple[datetime | None, bool]:
    """Google's ``{"dateTime": ...}`` or ``{"date": "YYYY-MM-DD"}`` (an all-day event)."""
    if not isinstance(value, Mapping):
        return None, False
    if value.get("dateTime"):
        return _parse_instant(value["dateTime"]), False
    if value.get("date"):
        try:
            day = date.fromisoformat(str(value["date"]))
        except ValueError:
            return None, True
        return datetime.combine(day, time(0), tzinfo=UTC), True
    return None, False


def _parse_instant(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if parsed.tzinfo is None:  # RFC 3339 requires an offset; a naive one is taken as UTC
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass
class _CalendarApi:
    """Requests of one run; refreshes the access token at most once per run."""

    client: httpx.Client
    settings: Settings
    policy: RequestRetryPolicy
    now: datetime
    limiter: Throttle | None = None
    refreshed: bool = False

    def list_events(
        self,
        session: Session,
        connection: CalendarConnection,
        *,
        sync_token: str | None,
        page_token: str | None,
    ) -> dict[str, Any]:
        params: dict[str, str | int] = {"maxResults": PAGE_SIZE, "singleEvents": "true"}
        if sync_token:
            params["syncToken"] = sync_token
        if page_token:
            params["pageToken"] = page_token
        base = str(self.settings.google_api_base_url).rstrip("/")
        url = f"{base}/calendars/{quote(connection.calendar_id, safe='')}/events"
        while True:
            token = connection.access_token

            def build(token: str = token) -> httpx.Request:
                headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
                return self.client.build_request("GET", url, params=params, headers=headers)

            try:
                response = send(
                    self.client,
                    build,
                    operation="calendar events.list",
                    provider=PROVIDER,
                    policy=self.policy,
                    before_attempt=self._wait_for_slot,
                    on_rate_limited=self.limiter.pause if self.limiter else None,
                )
            except AuthenticationFailed as exc:
                if self.refreshed:
                    raise ReauthorizationRequired(
                        f"{exc}, again after a token refresh",
                        status_code=exc.status_code,
                    ) from None
                self._refresh(session, connection)
                continue
            return json_object(response, operation="calendar events.list")

    def _wait_for_slot(self) -> None:
        if self.limiter is not None:
            SYNC_METRICS.get().rate_limit_wait.labels(PROVIDER).inc(self.limiter.acquire())

    def _refresh(self, session: Session, connection: CalendarConnection) -> None:
        """Trade the refresh token for a new access token and commit it at once."""
        self.refreshed = True
        metrics = SYNC_METRICS.get()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": connection.refresh_token,
            "client_id": self.settings.google_client_id,
            "client_secret": self.settings.google_client_secret.get_secret_value(),
        }
        url = str(self.settings.google_token_url)

        def build() -> httpx.Request:
            return self.client.build_request("POST", url, data=form)

        try:
            response = send(
                self.client,
                build,
                operation="oauth token refresh",
                provider=PROVIDER,
                policy=self.policy,
            )
        except PermanentHTTPError as exc:
            metrics.token_refreshes.labels(PROVIDER, "failed").inc()
            # 400 invalid_grant (revoked or expired refresh token) and 401 invalid_client
            raise ReauthorizationRequired(str(exc), status_code=exc.status_code) from None
        body = json_object(response, operation="oauth token refresh")
        access_token = body.get("access_token")
        if not access_token:
            metrics.token_refreshes.labels(PROVIDER, "failed").inc()
            raise UnexpectedResponse("oauth token refresh: answer without access_token")
        expires_in = body.get("expires_in")
        connection.access_token = str(access_token)
        if isinstance(expires_in, int | float):
            connection.access_token_expires_at = self.now + timedelta(seconds=expires_in)
        if body.get("refresh_token"):  # Google may rotate it
            connection.refresh_token = str(body["refresh_token"])
        session.add(connection)
        session.commit()
        metrics.token_refreshes.labels(PROVIDER, "refreshed").inc()
        log.info("calendar_access_token_refreshed", user_id=connection.user_id)
