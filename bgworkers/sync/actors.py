"""Actors of the sync domain (queue ``sync``): a periodic fan-out and a per-user sync each.

The periodic actors only list the users with an active connection and record their messages
in their transaction (the message outbox): one per user for Notion, one per page of users for
the calendar (the common one-request sync done together; anything longer or failing goes on
in the user's own message). The per-user actors do the rest, so one user's slow or failing
account never holds up the others, and a permanent error dead-letters only that user's
message. Each run is idempotent: it resumes from the committed progress on the connection
row, and a duplicate delivery finds nothing new to do.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import dramatiq
from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlmodel import Session

from bgworkers import queues
from bgworkers.db.engine import session_scope, utcnow
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.loggers import get_logger
from bgworkers.outbox import enqueue, enqueue_many
from bgworkers.outbox.keys import per_run_key
from bgworkers.settings import get_settings
from bgworkers.sync import pause_chain
from bgworkers.sync.metrics import SYNC_METRICS
from bgworkers.sync.models import CalendarConnection, NotionConnection
from bgworkers.sync.store import Connection, fan_out
from bgworkers.tasks import is_final_attempt, task
from bgworkers.users.slots import defer, user_slot, user_slots

log = get_logger(__name__)

# The provider clients (httpx, tenacity) are imported by the per-user actors when they run:
# a worker process that never syncs (``-Q email``, a quiet hour) does not carry them.

# Per-user runs: up to 10 minutes each, 6 attempts. Fan-outs: 4 attempts, then dead-lettered
# (sending a user's message twice is harmless: the per-user sync resumes from its cursor).


def _sync_user(
    actor: dramatiq.Actor[Any, Any],
    sync: Callable[..., Any],
    model: Connection,
    provider: str,
    user_id: int,
    paused_since_s: float | None,
    **extra: Any,
) -> None:
    """Run one provider's per-user sync with this process's client and fresh settings.

    Fair share: the run takes one of the user's slots (``BGW_MAX_CONCURRENT_JOBS_PER_USER``)
    or is deferred, and yields after ``BGW_SYNC_TIME_SLICE_S``, queueing the rest of its
    listing (it resumes from the committed page) behind the other users' messages. A run
    whose credential is paused (a 429) stops too, and its message is recorded again for when
    the pause ends, carrying when the storm began (``paused_since_s``, epoch seconds): the
    thread goes on with other users' work, no retry is used, and the connection is marked
    so that no fan-out starts a second chain (:mod:`bgworkers.sync.pause_chain`). A chain's
    message that gives up before its run committed leaves its connection to the next tick
    (:func:`_release_if_given_up`); one that fails after (its user slot's release) has
    already recorded what comes next, the chain's next link included.
    """
    from bgworkers.sync.http import RequestRetryPolicy, get_client

    settings = get_settings()
    settled = False  # the run's outcome, and so the chain's next step, is committed
    try:
        with user_slot(user_id, cap=settings.max_concurrent_jobs_per_user) as taken:
            if not taken:
                defer(actor, user_id, paused_since_s)
                return
            with session_scope() as session:
                now = utcnow()
                result = sync(
                    session=session,
                    user_id=user_id,
                    client=get_client(settings),
                    settings=settings,
                    now=now,
                    policy=RequestRetryPolicy.from_settings(settings),
                    should_yield=time_slice(settings.sync_time_slice_s),
                    resuming=paused_since_s is not None,
                    **extra,
                )
                _follow_up(session, actor, model, provider, result, paused_since_s, now=now)
            settled = True
    except (Exception, TimeLimitExceeded) as exc:  # re-raised: the retry policy decides
        if paused_since_s is not None and not settled:
            _release_if_given_up(actor, model, provider, user_id, paused_since_s, exc)
        raise


def _release_if_given_up(
    actor: dramatiq.Actor[Any, Any],
    model: Connection,
    provider: str,
    user_id: int,
    paused_since_s: float,
    exc: BaseException,
) -> None:
    """A chain's message that gives up (last attempt, permanent error) sets its ``paused``
    connection ``active`` in a transaction of its own (the run's is rolled back), so the next
    tick syncs it (:func:`~bgworkers.sync.pause_chain.release_given_up`), unless an earlier
    attempt of this message recorded the chain's next link (the key :func:`_follow_up` gives
    it): that link is the chain, and the mark stays for it. A release that fails (the
    database away) is logged, not raised: the message's own failure propagates, and the
    fan-out's reclaim takes the mark back later.

    Not seen here: a copy sent by :func:`~bgworkers.users.slots.defer` goes straight to the
    broker. An attempt that deferred and then failed (the slot's release, the time limit)
    leaves a window where the release and that copy both live; the copy then runs as a
    chain's link on an ``active`` connection, beside whatever the next tick sends."""
    if not pause_chain.gives_up(exc, final_attempt=is_final_attempt(actor)):
        return
    next_link = per_run_key((user_id, paused_since_s))
    try:
        with session_scope() as session:
            pause_chain.release_given_up(
                session, model, user_id, exc, provider=provider, now=utcnow(), next_link=next_link
            )
    except Exception as release_error:  # noqa: BLE001 - the message's own failure propagates
        log.error(
            "sync_pause_chain_not_released",
            provider=provider,
            user_id=user_id,
            error=failure_reason(release_error),
            cause=failure_reason(exc),
        )


def _follow_up(
    session: Session,
    actor: dramatiq.Actor[Any, Any],
    model: Connection,
    provider: str,
    result: Any,
    paused_since_s: float | None,
    *,
    now: datetime,
) -> None:
    """Record what comes after a run in its transaction: the rest of a yielded listing, or
    the re-send of a paused run while its storm is within ``BGW_SYNC_MAX_PAUSE_S`` (else the
    chain ends). A redelivered message records the same follow-up once (dedupe key)."""
    user_id = result.user_id
    if result.outcome == "paused":
        since = now.timestamp() if paused_since_s is None else paused_since_s
        if pause_chain.continue_chain(
            session,
            model,
            user_id,
            provider=provider,
            paused_since_s=since,
            now=now,
            max_pause_s=get_settings().sync_max_pause_s,
            starts=paused_since_s is None,
        ):
            delay_ms = resume_delay_ms(result.resume_after_s)
            key = per_run_key((user_id, since))
            enqueue(session, actor, user_id, since, delay_ms=delay_ms, dedupe_key=key)
        return
    if result.outcome == "yielded":
        enqueue(session, actor, user_id, dedupe_key=per_run_key((user_id,)))  # the rest, later


#: The longest delay a paused run is sent again with, milliseconds (see
#: :data:`bgworkers.sync.pause_chain.MAX_RESUME_DELAY_S`).
MAX_RESUME_DELAY_MS = pause_chain.MAX_RESUME_DELAY_S * 1000


def resume_delay_ms(resume_after_s: float) -> int:
    """The delay, in milliseconds, to send a paused run again with: its pause, rounded up,
    at least 1 ms and at most :data:`MAX_RESUME_DELAY_MS`."""
    return pause_chain.resume_delay_ms(resume_after_s)


def time_slice(seconds: float) -> Callable[[], bool] | None:
    """A check that turns true ``seconds`` from now (monotonic); None for 0 (never)."""
    if seconds <= 0:
        return None
    ends = time.monotonic() + seconds
    return lambda: time.monotonic() >= ends


def _fan_out(model: Connection, actor: dramatiq.Actor[Any, Any], provider: str) -> None:
    """Record ``actor`` once per user with an active ``model`` connection (the outbox); a
    connection paused by a storm is left to its chain's pending re-send."""
    with session_scope() as session:
        _leave_paused(session, model, provider)
        fan_out(
            session,
            model,
            batch_size=get_settings().sync_fanout_batch_size,
            send_batch=_sender(session, actor, provider),
        )


def _leave_paused(session: Session, model: Connection, provider: str) -> None:
    pause_chain.leave_paused_to_their_chains(
        session, model, provider=provider, now=utcnow(), max_pause_s=get_settings().sync_max_pause_s
    )


def _sender(
    session: Session, actor: dramatiq.Actor[Any, Any], provider: str, *, page_size: int = 0
) -> Callable[[list[int]], None]:
    """Record ``actor`` per user, or per ``page_size`` users (the argument is then their list)."""

    def send_batch(user_ids: list[int]) -> None:
        if page_size:
            pages = [user_ids[i : i + page_size] for i in range(0, len(user_ids), page_size)]
            enqueue_many(session, actor, ((page,) for page in pages), dedupe_key=per_run_key)
        else:
            enqueue_many(session, actor, ((u,) for u in user_ids), dedupe_key=per_run_key)
        SYNC_METRICS.get().users_enqueued.labels(provider).inc(len(user_ids))

    return send_batch


@task(queue=queues.SYNC, max_retries=5, min_backoff_ms=10_000, time_limit_ms=600_000)
def sync_user_calendar(user_id: int, paused_since_s: float | None = None) -> None:
    """Pull one user's Google Calendar changes (``paused_since_s``: see :func:`_sync_user`)."""
    from bgworkers.sync.google_calendar import sync_calendar
    from bgworkers.sync.limits import google_throttle

    limiter = google_throttle(get_settings(), user_id)
    model = CalendarConnection
    _sync_user(
        sync_user_calendar, sync_calendar, model, "google_calendar", user_id, paused_since_s,
        limiter=limiter,
    )  # fmt: skip


@task(queue=queues.SYNC, max_retries=5, min_backoff_ms=10_000, time_limit_ms=120_000)
def sync_calendar_page(user_ids: list[int]) -> None:
    """Sync a page of users' calendars (:mod:`bgworkers.sync.calendar_page`); a user with
    more to list, or whose listing failed, goes on in a ``sync_user_calendar`` of its own."""
    from bgworkers.sync.calendar_page import sync_calendar_page as sync_page
    from bgworkers.sync.http import get_client
    from bgworkers.sync.limits import shared_limiter
    from bgworkers.sync.page_requests import run_all

    settings = get_settings()
    with user_slots(user_ids, cap=settings.max_concurrent_jobs_per_user) as taken:
        for user_id in user_ids:
            if user_id not in taken:
                defer(sync_user_calendar, user_id)
        if not taken:
            return
        with session_scope() as session:
            sync_page(
                session=session,
                user_ids=[u for u in user_ids if u in taken],
                client=get_client(settings),
                settings=settings,
                limiter=shared_limiter(settings),
                now=utcnow(),
                run_all=functools.partial(run_all, settings),
                hand_off=_hand_off_calendar,
            )


def _hand_off_calendar(session: Session, user_id: int, delay_ms: int | None) -> None:
    enqueue(session, sync_user_calendar, user_id, delay_ms=delay_ms)


@task(queue=queues.SYNC, max_retries=5, min_backoff_ms=10_000, time_limit_ms=600_000)
def sync_user_notion_pages(user_id: int, paused_since_s: float | None = None) -> None:
    """Pull one user's Notion pages (``paused_since_s``: see :func:`_sync_user`)."""
    from bgworkers.sync.limits import notion_throttle
    from bgworkers.sync.notion import sync_notion

    throttle_for = functools.partial(notion_throttle, get_settings())
    _sync_user(
        sync_user_notion_pages, sync_notion, NotionConnection, "notion", user_id, paused_since_s,
        throttle_for=throttle_for,
    )  # fmt: skip


@task(queue=queues.SYNC, periodic=True, max_retries=3, time_limit_ms=120_000)
def sync_calendar_events() -> None:
    """Hourly: one ``sync_calendar_page`` message per ``BGW_SYNC_PAGE_SIZE`` users with an
    active calendar."""
    page_size = get_settings().sync_page_size
    with session_scope() as session:
        _leave_paused(session, CalendarConnection, "google_calendar")
        send = _sender(session, sync_calendar_page, "google_calendar", page_size=page_size)
        fan_out(
            session,
            CalendarConnection,
            batch_size=get_settings().sync_fanout_batch_size,
            send_batch=send,
        )


@task(queue=queues.SYNC, periodic=True, max_retries=3, time_limit_ms=120_000)
def sync_notion_pages() -> None:
    """Every two hours: one ``sync_user_notion_pages`` message per user with Notion."""
    _fan_out(NotionConnection, sync_user_notion_pages, "notion")
