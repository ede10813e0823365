"""One chain of re-sends per connection through a rate-limit storm, and an end to it.

A per-user run whose credential is paused ends ``paused`` and records its message again for
when the pause ends (:mod:`bgworkers.sync.actors`). Without a record of that, each periodic
fan-out during a long storm would send the user one more message, which would pause and
re-send itself too: one more chain per tick. So the run that pauses marks its connection
``paused`` in the transaction that records the re-send (the outbox): the fan-out sends
nothing for a paused connection, and the chain's own message, which carries when the storm
began (``paused_since_s``), is the only one that syncs it. A chain whose storm lasted longer
than ``BGW_SYNC_MAX_PAUSE_S`` stops: the connection is set ``active`` again with the reason in
``last_error``, and the next scheduled fan-out starts afresh. A paused connection whose
re-send never came back (dead-lettered after its retries) is taken back by the fan-out once
it is older than a chain can be (:func:`stale_after_s`). A chain's message that gives up (its
last attempt fails, or a permanent error) is no re-send that comes back either: it releases
its mark at once (:func:`release_given_up`), so the next tick syncs the connection instead of
the reclaim, up to ``BGW_SYNC_MAX_PAUSE_S`` + 30 minutes later; unless an earlier attempt of
that message committed the chain's next link, which then carries the mark.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from bgworkers.errors import PermanentError
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.loggers import get_logger
from bgworkers.outbox.models import OutboxMessage
from bgworkers.sync.metrics import SYNC_METRICS
from bgworkers.sync.models import STATUS_ACTIVE, STATUS_PAUSED
from bgworkers.sync.store import Connection

log = get_logger(__name__)

#: The longest delay a paused run is sent again with, seconds: a delayed message waits
#: unacked in a worker, and RabbitMQ closes the channel of one unacked for 30 minutes. A
#: longer pause is found again by the run that comes back, which is paused again.
MAX_RESUME_DELAY_S = 15 * 60


def resume_delay_ms(resume_after_s: float) -> int:
    """The delay, in milliseconds, to send rate-limited work again with: the wait, rounded
    up, at least 1 ms and at most :data:`MAX_RESUME_DELAY_S` (a per-user run's re-send, or a
    calendar page's hand-off of a user whose credential is paused)."""
    return min(max(math.ceil(resume_after_s * 1000), 1), MAX_RESUME_DELAY_S * 1000)


#: User ids named in a fan-out's log line about the connections it skipped.
_LOGGED_IDS = 20


def stale_after_s(max_pause_s: float) -> float:
    """Seconds after which a ``paused`` mark whose re-send has not come back is presumed
    lost: a live chain refreshes its mark at least every :data:`MAX_RESUME_DELAY_S`, and
    stops after ``max_pause_s``; twice the resume delay leaves room for a busy queue."""
    return max_pause_s + 2 * MAX_RESUME_DELAY_S


def continue_chain(
    session: Session,
    model: Connection,
    user_id: int,
    *,
    provider: str,
    paused_since_s: float,
    now: datetime,
    max_pause_s: float,
    starts: bool = False,
) -> bool:
    """Mark the connection ``paused`` and return True (its re-send is recorded by the caller
    in this transaction), or, once the storm began more than ``max_pause_s`` ago, set it
    ``active`` with the reason in ``last_error`` and return False (no re-send).

    ``starts``: the run was no chain's (it found the connection ``active``). If another run
    of the user paused the connection meanwhile (two at once, up to
    ``BGW_MAX_CONCURRENT_JOBS_PER_USER``), that run's chain syncs it: False, no second chain.
    The row is locked, so of two runs pausing at once the second sees the first's mark."""
    status = session.exec(
        select(col(model.status)).where(col(model.user_id) == user_id).with_for_update()
    ).first()
    if starts and status == STATUS_PAUSED:
        log.info("sync_pause_chain_already_running", provider=provider, user_id=user_id)
        return False
    connection = session.exec(select(model).where(model.user_id == user_id)).first()
    if connection is None:
        return False
    paused_for_s = now.timestamp() - paused_since_s
    connection.updated_at = now
    if paused_for_s <= max_pause_s:
        connection.status = STATUS_PAUSED
        session.add(connection)
        return True
    connection.status = STATUS_ACTIVE
    connection.last_error = (
        f"rate limited for {paused_for_s:.0f} s (over {max_pause_s:g} s): "
        "left to the next scheduled sync"
    )
    connection.last_error_at = now
    session.add(connection)
    SYNC_METRICS.get().pause_chains.labels(provider, "given_up").inc()
    log.warning(
        "sync_pause_chain_given_up",
        provider=provider,
        user_id=user_id,
        paused_for_s=round(paused_for_s, 1),
        max_pause_s=max_pause_s,
    )
    return False


def end_chain(session: Session, model: Connection, user_id: int, *, now: datetime) -> None:
    """The run got through (or stopped for another reason than a pause): a ``paused``
    connection is ``active`` again, for the fan-outs to come."""
    session.execute(
        update(model)
        .where(col(model.user_id) == user_id, col(model.status) == STATUS_PAUSED)
        .values(status=STATUS_ACTIVE, updated_at=now)
    )


def gives_up(exc: BaseException, *, final_attempt: bool) -> bool:
    """Whether a chain's message that raised ``exc`` is dead-lettered rather than retried.

    Unlike a reminder's give-up, an outage counts: whatever the cause, no message of the
    chain comes back to sync the connection."""
    return final_attempt or isinstance(exc, PermanentError)


def release_given_up(
    session: Session,
    model: Connection,
    user_id: int,
    exc: BaseException,
    *,
    provider: str,
    now: datetime,
    next_link: str | None,
) -> bool:
    """The chain's message gives up on ``exc``: a connection still ``paused`` is set
    ``active`` with the reason in ``last_error`` (the next tick syncs it) and True is
    returned. A connection the run already released (a permanent error is recorded by the
    run itself) or that is no longer ``paused`` is left as it is: False.

    ``next_link``: the outbox dedupe key under which this message records the chain's next
    link. An earlier attempt may have committed it and failed after (the user slot's
    release, the time limit, a COMMIT whose answer was lost): that link is live, and a
    release would let the next tick start a second chain beside it, so the mark is kept
    (False). One lookup on the unique index; outbox rows are kept far longer than a
    message's retries last. Otherwise the giving-up message was the chain's only one, and
    the tick's new message is the only chain."""
    if next_link is not None and _recorded(session, next_link):
        log.info("sync_pause_chain_left_to_next_link", provider=provider, user_id=user_id)
        return False
    reason = f"rate-limit chain stopped, its message gave up: {failure_reason(exc)}"
    released = session.execute(
        update(model)
        .where(col(model.user_id) == user_id, col(model.status) == STATUS_PAUSED)
        .values(status=STATUS_ACTIVE, updated_at=now, last_error=reason[:500], last_error_at=now)
    )
    if not int(getattr(released, "rowcount", 0) or 0):
        return False
    SYNC_METRICS.get().pause_chains.labels(provider, "failed").inc()
    log.warning("sync_pause_chain_failed", provider=provider, user_id=user_id, error=reason)
    return True


def _recorded(session: Session, dedupe_key: str) -> bool:
    """Whether the outbox holds a message recorded under ``dedupe_key``."""
    found = select(col(OutboxMessage.id)).where(col(OutboxMessage.dedupe_key) == dedupe_key)
    return session.exec(found.limit(1)).first() is not None


def leave_paused_to_their_chains(
    session: Session, model: Connection, *, provider: str, now: datetime, max_pause_s: float
) -> int:
    """Before a fan-out: take back the ``paused`` connections whose chain is presumed lost
    (they become ``active`` and are sent), then count, log and return the ones left to
    their pending re-send (the fan-out sends only ``active`` connections)."""
    metrics = SYNC_METRICS.get().pause_chains
    cutoff = now - timedelta(seconds=stale_after_s(max_pause_s))
    paused = col(model.status) == STATUS_PAUSED
    reclaimed = session.execute(
        update(model)
        .where(paused, col(model.updated_at) < cutoff)
        .values(status=STATUS_ACTIVE, updated_at=now)
    )
    taken_back = int(getattr(reclaimed, "rowcount", 0) or 0)
    skipped = int(session.exec(select(func.count()).select_from(model).where(paused)).one())
    if taken_back:
        metrics.labels(provider, "reclaimed").inc(taken_back)
        log.warning("sync_pause_chains_reclaimed", provider=provider, connections=taken_back)
    if skipped:
        metrics.labels(provider, "tick_skipped").inc(skipped)
        first = session.exec(
            select(model.user_id).where(paused).order_by(col(model.user_id)).limit(_LOGGED_IDS)
        ).all()
        log.info(
            "sync_fanout_skipped_paused",
            provider=provider,
            connections=skipped,
            user_ids=list(first),
        )
    return skipped
