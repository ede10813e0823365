"""A page of users' Google Calendar syncs in one message: the common case made cheap.

Why: most hourly syncs are one request that returns a few changes (or none). Run one user per
message, each paid for a message, an advisory lock, a rate-limiter transaction on the
project's one hot row and a few commits, and worker threads spent most of their time waiting
on PostgreSQL. A page does that bookkeeping once for all its users:

1. the caller took the users' slots (:func:`bgworkers.users.slots.user_slots`, one statement
   per slot number);
2. their connections are read in one query, and a rate-limit slot is reserved for each
   user's request in one transaction (:meth:`SharedLimiter.reserve_many`); a user whose
   credential is paused reserves none and is handed off for after the pause;
3. the requests run concurrently (``run_all``, a thread pool of the process), one each;
4. every answer that completes a listing is written in one transaction: one upsert of all
   events, one delete of cancelled ones, one of stale ones after full listings, one update
   of the connections' progress.

Only the simple case is done here. A user whose answer is anything else goes on in a
``sync_user_calendar`` message of its own (``hand_off``), recorded in the page's transaction
(the outbox), where the per-user path does what it always did: a listing with more pages
continues there after its first page is committed here (a heavy user never holds the page);
an error of any kind (401 and the token refresh, 410 and the full listing, 429, 5xx, a body
of the wrong shape) is retried or dead-lettered there, alone. A write that fails is retried
user by user, so one user's bad data fails only that user.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import httpx
from sqlalchemy import Boolean, bindparam, case, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlmodel import Session, col

from bgworkers.logs.loggers import get_logger
from bgworkers.settings import Settings
from bgworkers.sync.google_calendar import EVENTS, PAGE_SIZE, PROVIDER, event_rows, events_upsert
from bgworkers.sync.http import RequestRetryPolicy, json_object, send
from bgworkers.sync.limits import google_limits
from bgworkers.sync.metrics import SYNC_METRICS
from bgworkers.sync.models import STATUS_ACTIVE, CalendarConnection
from bgworkers.sync.pause_chain import resume_delay_ms
from bgworkers.sync.shared_limits import PageSlot, RateLimitedLater, SharedLimiter

log = get_logger(__name__)

#: A request that waited for its slot asks whether a 429 paused its credential meanwhile (a
#: slot reserved before a pause must not be used in it). The page reads its credentials'
#: pauses at most once per this many seconds for all of them: asking per request was a
#: transaction each, 25-30% of the request threads' time in a profile.
PAUSES_MAX_AGE_S: Final = 0.2
#: One attempt per request in a page: a retry belongs to the user's own message.
_ONE_ATTEMPT: Final = RequestRetryPolicy(max_attempts=1)
_CONNECTIONS = CalendarConnection.__table__  # type: ignore[attr-defined]

#: ``hand_off(session, user_id, delay_ms)``: record the user's own message in the session.
HandOff = Callable[[Session, int, "int | None"], None]
#: ``run_all(fn, items)``: ``fn`` over ``items``, concurrently, results in order.
RunAll = Callable[[Callable[[Any], Any], Sequence[Any]], Iterable[Any]]


@dataclass(frozen=True)
class _Listing:
    """A user's connection as the page read it: what its request needs and what it expects
    to find again when it writes."""

    id: int
    user_id: int
    calendar_id: str
    access_token: str
    sync_token: str | None
    page_token: str | None


@dataclass
class _Answer:
    listing: _Listing
    body: dict[str, Any] | None = None
    #: Why the user goes on alone (None: the body is to be written here).
    hand_off: str | None = None
    delay_ms: int | None = None


@dataclass
class PageResult:
    """What became of a page's users (ids), for the caller and the page's log line."""

    completed: list[int] = field(default_factory=list)
    continued: list[int] = field(default_factory=list)
    handed_off: list[int] = field(default_factory=list)
    #: Why users were handed on, and how many for each reason (an error's type name,
    #: ``rate_limited``, ``paused``), for the page's log line.
    reasons: dict[str, int] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    upserted: int = 0
    removed: int = 0


def sync_calendar_page(
    *,
    session: Session,
    user_ids: Sequence[int],
    client: httpx.Client,
    settings: Settings,
    limiter: SharedLimiter,
    now: datetime,
    run_all: RunAll,
    hand_off: HandOff,
    sleep: Callable[[float], None] = time.sleep,
) -> PageResult:
    """Sync ``user_ids`` (whose slots the caller holds) as described in the module docstring;
    commits the page's writes and hand-offs. A database that is away raises (the page's
    message is retried whole: nothing of it was committed, or what was is found again)."""
    result = PageResult()
    listings = _read_listings(session, user_ids)
    session.commit()  # no transaction stays open across the requests
    result.skipped = sorted(set(user_ids) - {listing.user_id for listing in listings})
    if listings:
        limits = [google_limits(settings, x.user_id) for x in listings]
        slots = limiter.reserve_many(limits)
        base = str(settings.google_api_base_url).rstrip("/")
        pauses = _Pauses(limiter, [own[0].key for own in limits])

        def fetch(job: tuple[_Listing, PageSlot]) -> _Answer:
            return _fetch(client, limiter, pauses, settings, base, job[0], job[1], sleep)

        answers = list(run_all(fetch, list(zip(listings, slots, strict=True))))
        _write(session, answers, now=now, result=result, hand_off=hand_off)
    _count(result)
    return result


def _read_listings(session: Session, user_ids: Sequence[int]) -> list[_Listing]:
    c = _CONNECTIONS.c
    rows = session.execute(
        select(c.id, c.user_id, c.calendar_id, c.access_token, c.sync_token, c.page_token)
        .where(col(c.user_id).in_(list(user_ids)), c.status == STATUS_ACTIVE)
        .order_by(c.user_id)
    ).all()
    return [_Listing(*row) for row in rows]


def _fetch(
    client: httpx.Client,
    limiter: SharedLimiter,
    pauses: _Pauses,
    settings: Settings,
    base: str,
    listing: _Listing,
    slot: PageSlot,
    sleep: Callable[[float], None],
) -> _Answer:
    """One user's ``events.list`` at its reserved slot; never raises (a failure is the
    user's alone and is handed to its own message)."""
    limits = google_limits(settings, listing.user_id)
    wait = slot.wait_s
    if slot.paused:  # no slot reserved: its own message, after the pause
        return _Answer(listing, hand_off="paused", delay_ms=resume_delay_ms(wait))
    if wait > settings.sync_http_max_inline_wait_s:
        return _Answer(listing, hand_off="rate_limited", delay_ms=resume_delay_ms(wait))
    if wait > 0:
        sleep(wait)
        SYNC_METRICS.get().rate_limit_wait.labels(PROVIDER).inc(wait)
        if pauses.paused(limits[0].key):
            return _Answer(listing, hand_off="paused")
    params: dict[str, str | int] = {"maxResults": PAGE_SIZE, "singleEvents": "true"}
    if listing.sync_token:
        params["syncToken"] = listing.sync_token
    if listing.page_token:
        params["pageToken"] = listing.page_token
    url = f"{base}/calendars/{quote(listing.calendar_id, safe='')}/events"
    headers = {"Authorization": f"Bearer {listing.access_token}", "Accept": "application/json"}

    def pause(seconds: float) -> None:
        limiter.pause(limits[0].key, seconds)

    try:
        response = send(
            client,
            lambda: client.build_request("GET", url, params=params, headers=headers),
            operation="calendar events.list",
            provider=PROVIDER,
            policy=_ONE_ATTEMPT,
            on_rate_limited=pause,
        )
        return _Answer(listing, body=json_object(response, operation="calendar events.list"))
    except RateLimitedLater as exc:  # paused everywhere: its own message, after the pause
        delay_ms = resume_delay_ms(float(exc.retry_after_s or 0.0))
        return _Answer(listing, hand_off="rate_limited", delay_ms=delay_ms)
    except Exception as exc:  # noqa: BLE001 - any failure is this user's: its own message
        # classifies it (refresh, full listing, retry, dead letter) as the per-user path does.
        return _Answer(listing, hand_off=type(exc).__name__)


class _Pauses:
    """The pauses of a page's credentials, read for all of them at once and at most every
    :data:`PAUSES_MAX_AGE_S` (thread-safe: the page's requests ask from the pool)."""

    def __init__(self, limiter: SharedLimiter, keys: list[str]) -> None:
        self._limiter = limiter
        self._keys = keys
        self._lock = threading.Lock()
        self._read_at = -math.inf
        self._until: dict[str, float] = {}

    def paused(self, key: str) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at > PAUSES_MAX_AGE_S:
                seconds = self._limiter.paused_keys(self._keys)
                self._until = {k: now + s for k, s in seconds.items()}
                self._read_at = now
            return self._until.get(key, 0.0) > now


@dataclass
class _Writes:
    """The statements' parameters for a set of answers."""

    events: list[dict[str, Any]] = field(default_factory=list)
    cancelled: list[tuple[int, str, str]] = field(default_factory=list)
    stale: list[tuple[int, str, int]] = field(default_factory=list)
    progress: list[dict[str, Any]] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)
    continued: list[int] = field(default_factory=list)


def _write(
    session: Session,
    answers: list[_Answer],
    *,
    now: datetime,
    result: PageResult,
    hand_off: HandOff,
) -> None:
    """Write every answer in one transaction; if that fails, each user in its own, and
    hand on whoever still fails. Hand-offs are recorded in the same transaction."""
    alone = [a for a in answers if a.hand_off is not None]
    ready = [a for a in answers if a.hand_off is None]
    try:  # a copy: the users this attempt adds (more pages) must not outlive its rollback
        _write_answers(session, ready, [*alone], now=now, result=result, hand_off=hand_off)
        session.commit()
        return
    except (OperationalError, InterfaceError):
        session.rollback()
        raise  # the database is away: the page is retried whole
    except (SQLAlchemyError, ValueError, TypeError) as exc:
        session.rollback()
        log.warning("calendar_page_write_failed", users=len(ready), error=_short(exc))
    _reset(result)
    for answer in ready:  # one user at a time: a bad one fails only itself
        try:
            _write_answers(session, [answer], [], now=now, result=result, hand_off=hand_off)
            session.commit()
        except (OperationalError, InterfaceError):
            session.rollback()
            raise
        except (SQLAlchemyError, ValueError, TypeError) as exc:
            session.rollback()
            log.warning(
                "calendar_page_user_write_failed",
                user_id=answer.listing.user_id,
                error=_short(exc),
            )
            answer.hand_off = type(exc).__name__
            alone.append(answer)
    _write_answers(session, [], alone, now=now, result=result, hand_off=hand_off)
    session.commit()


def _write_answers(
    session: Session,
    ready: list[_Answer],
    alone: list[_Answer],
    *,
    now: datetime,
    result: PageResult,
    hand_off: HandOff,
) -> None:
    writes = _Writes()
    locked = _lock_progress(session, [a.listing.id for a in ready])
    for answer in ready:
        listing, body = answer.listing, answer.body or {}
        current = locked.get(listing.id)
        if current is None or current[:2] != (listing.sync_token, listing.page_token):
            # Another delivery moved this user's progress meanwhile: let it finish.
            result.superseded.append(listing.user_id)
            continue
        if _plan(listing, body, current[2], writes, now=now):
            alone.append(_Answer(listing, hand_off="more_pages"))
    dialect = session.get_bind().dialect.name
    if writes.events:
        session.execute(events_upsert(dialect), writes.events)
    removed = _delete_cancelled(session, writes.cancelled) + _delete_stale(session, writes.stale)
    if writes.progress:
        session.execute(_PROGRESS, writes.progress)
    for answer in alone:
        hand_off(session, answer.listing.user_id, answer.delay_ms)
    result.completed.extend(writes.completed)
    result.continued.extend(writes.continued)
    for answer in alone:
        if answer.hand_off != "more_pages":
            result.handed_off.append(answer.listing.user_id)
            reason = str(answer.hand_off)
            result.reasons[reason] = result.reasons.get(reason, 0) + 1
    result.upserted += len(writes.events)
    result.removed += removed


def _plan(
    listing: _Listing, body: dict[str, Any], generation: int, writes: _Writes, *, now: datetime
) -> bool:
    """Add one answer's rows to ``writes``; True when its listing has more pages (the user
    goes on alone after this page). Raises ValueError for a body of the wrong shape."""
    full = listing.sync_token is None
    if full and listing.page_token is None:
        generation += 1  # a full listing starts: what it does not see again goes at its end
    items = body.get("items") or []
    if not isinstance(items, list):
        raise ValueError("calendar events.list: items is not a list")
    page = event_rows(
        items,
        user_id=listing.user_id,
        calendar_id=listing.calendar_id,
        generation=generation,
        now=now,
    )
    next_page, sync_token = body.get("nextPageToken"), body.get("nextSyncToken")
    if not next_page and not sync_token:
        raise ValueError("calendar events.list: last page without nextSyncToken")
    writes.events.extend(page.rows)
    writes.cancelled.extend((listing.user_id, listing.calendar_id, c) for c in page.cancelled)
    if not next_page and full:
        writes.stale.append((listing.user_id, listing.calendar_id, generation))
    writes.progress.append(
        {
            "b_id": listing.id,
            "b_generation": generation,
            "b_sync_token": listing.sync_token if next_page else str(sync_token),
            "b_page_token": str(next_page) if next_page else None,
            "b_finished": not next_page,
            "b_now": now,
        }
    )
    (writes.continued if next_page else writes.completed).append(listing.user_id)
    return bool(next_page)


def _lock_progress(session: Session, ids: list[int]) -> dict[int, tuple[Any, Any, int]]:
    """``id -> (sync_token, page_token, generation)`` of the connections, locked."""
    if not ids:
        return {}
    c = _CONNECTIONS.c
    rows = session.execute(
        select(c.id, c.sync_token, c.page_token, c.generation)
        .where(col(c.id).in_(ids), c.status == STATUS_ACTIVE)
        .order_by(c.id)
        .with_for_update()
    ).all()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


_C = _CONNECTIONS.c
_WHEN = _C.updated_at.type
#: A connection's progress after a page (``last_synced_at`` only when its listing ended).
_PROGRESS = (
    update(_CONNECTIONS)
    .where(_C.id == bindparam("b_id"))
    .values(
        generation=bindparam("b_generation"),
        sync_token=bindparam("b_sync_token"),
        page_token=bindparam("b_page_token"),
        updated_at=bindparam("b_now", type_=_WHEN),
        last_synced_at=case(
            (bindparam("b_finished", type_=Boolean()), bindparam("b_now", type_=_WHEN)),
            else_=_C.last_synced_at,
        ),
    )
)
#: Cancelled events, one parameter set each (run as one executemany).
_DELETE_CANCELLED = EVENTS.delete().where(
    EVENTS.c.user_id == bindparam("b_user"),
    EVENTS.c.calendar_id == bindparam("b_calendar"),
    EVENTS.c.external_id == bindparam("b_external"),
)
#: After a full listing: the user's events it did not see (older generations).
_DELETE_STALE = EVENTS.delete().where(
    EVENTS.c.user_id == bindparam("b_user"),
    EVENTS.c.calendar_id == bindparam("b_calendar"),
    EVENTS.c.sync_generation < bindparam("b_generation"),
)


def _delete_cancelled(session: Session, keys: list[tuple[int, str, str]]) -> int:
    """Delete every page's cancelled events; returns how many rows went (0 if unknown)."""
    params = [{"b_user": u, "b_calendar": c, "b_external": e} for u, c, e in keys]
    return _deleted(session, _DELETE_CANCELLED, params)


def _delete_stale(session: Session, stale: list[tuple[int, str, int]]) -> int:
    params = [{"b_user": u, "b_calendar": c, "b_generation": g} for u, c, g in stale]
    return _deleted(session, _DELETE_STALE, params)


def _deleted(session: Session, statement: Any, params: list[dict[str, Any]]) -> int:
    if not params:
        return 0
    rowcount = session.execute(statement, params).rowcount  # type: ignore[attr-defined]
    return max(int(rowcount or 0), 0)


def _reset(result: PageResult) -> None:
    for name in ("completed", "continued", "handed_off", "superseded"):
        getattr(result, name).clear()
    result.reasons.clear()
    result.upserted = result.removed = 0


def _short(exc: BaseException) -> str:
    detail = str(exc.orig if isinstance(exc, DBAPIError) else exc).splitlines()
    return f"{type(exc).__name__}: {detail[0][:200] if detail else ''}"


def _count(result: PageResult) -> None:
    """The page's users in the per-run counters (a handed-off user is counted by its own
    message), and one log line for the page."""
    metrics = SYNC_METRICS.get()
    for outcome, users in (
        ("completed", result.completed),
        ("yielded", result.continued),
        ("skipped", result.skipped),
        ("superseded", result.superseded),
    ):
        if users:
            metrics.runs.labels(PROVIDER, outcome).inc(len(users))
    pages = len(result.completed) + len(result.continued)
    if pages:
        metrics.pages.labels(PROVIDER).inc(pages)
    metrics.items.labels(PROVIDER, "upserted").inc(result.upserted)
    metrics.items.labels(PROVIDER, "removed").inc(result.removed)
    log.info(
        "calendar_page_finished",
        completed=len(result.completed),
        continued=len(result.continued),
        handed_off=len(result.handed_off),
        handed_off_because=result.reasons,
        skipped=len(result.skipped),
        superseded=len(result.superseded),
        upserted=result.upserted,
        removed=result.removed,
    )
