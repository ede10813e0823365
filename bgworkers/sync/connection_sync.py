"""One per-user sync run, whatever the provider: the skeleton both providers share.

A run finds the user's connection, skips it unless it is active (or paused by a rate-limit
storm: :mod:`bgworkers.sync.pause_chain`), lets the provider page
through its API (committing progress after every page), and on a classified error rolls
back the page in flight, records a permanent error on the connection (taking it out of the
fan-out when the provider refused its credentials) and re-raises for the retry policy. The
run is counted, timed and logged once (:func:`~bgworkers.sync.metrics.observe_run`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol, TypeVar

from sqlmodel import Session, select

from bgworkers.errors import PermanentError, TransientError
from bgworkers.sync.metrics import observe_run
from bgworkers.sync.models import (
    STATUS_ACTIVE,
    STATUS_PAUSED,
    CalendarConnection,
    NotionConnection,
)
from bgworkers.sync.pause_chain import end_chain
from bgworkers.sync.shared_limits import RateLimitedLater
from bgworkers.sync.store import mark_failed


class RunResult(Protocol):
    """What a provider's result carries besides its own counts (all reported as figures).

    ``resume_after_s``: with outcome ``paused``, the seconds until the credential's pause
    ends (when the rest of the run should be sent again)."""

    user_id: int
    outcome: str
    resume_after_s: float


#: Statuses a run syncs: ``paused`` is a connection whose chain of re-sends is running.
_SYNCED = (STATUS_ACTIVE, STATUS_PAUSED)

ResultT = TypeVar("ResultT", bound=RunResult)
ConnectionT = TypeVar("ConnectionT", CalendarConnection, NotionConnection)


def run_connection_sync(
    *,
    session: Session,
    model: type[ConnectionT],
    provider: str,
    result: ResultT,
    now: datetime,
    reauth_error: type[PermanentError],
    sync_pages: Callable[[ConnectionT], None],
    resuming: bool = False,
) -> ResultT:
    """Run ``sync_pages(connection)`` for ``result.user_id``'s active connection of ``model``.

    ``sync_pages`` fills ``result`` and commits after every page; a paused credential
    (:class:`~bgworkers.sync.shared_limits.RateLimitedLater`) ends the run with outcome
    ``paused`` and ``resume_after_s``; a
    :class:`~bgworkers.errors.TransientError` leaves the committed pages for the retry, a
    :class:`~bgworkers.errors.PermanentError` is recorded on the connection first (with
    ``reauth_error``, the connection is marked ``reauth_required``). ``now`` is the run's
    time, stamped on a recorded error.

    A ``paused`` connection is synced only by its chain's own message (``resuming``): any
    other (one sent before the pause) is skipped, the chain syncs it. A resuming run that
    ends other than ``paused`` sets the connection ``active`` again
    (:mod:`bgworkers.sync.pause_chain`); one that fails transiently leaves it to the message's
    retries, one that fails for good (never retried) sets it ``active`` for the next fan-out
    (as the actor does when the message's last attempt fails).
    """
    user_id = result.user_id
    with observe_run(provider, user_id) as figures:
        connection = session.exec(select(model).where(model.user_id == user_id)).first()
        if connection is None or connection.status not in _SYNCED:
            result.outcome = "skipped"
        elif connection.status == STATUS_PAUSED and not resuming:
            result.outcome = "skipped"
            figures["reason"] = "paused_chain_pending"
        else:
            was_paused = connection.status == STATUS_PAUSED
            try:
                sync_pages(connection)
            except RateLimitedLater as exc:
                # The credential is paused: not a failure, and no thread waits it out. The
                # pages committed so far stay; the caller sends the rest for after the pause.
                session.rollback()
                result.outcome = "paused"
                result.resume_after_s = float(exc.retry_after_s or 0.0)
            except (PermanentError, TransientError) as exc:
                session.rollback()  # only the page in flight; earlier pages are committed
                if isinstance(exc, PermanentError):
                    if was_paused:  # no retry comes back for the chain: the next tick syncs it
                        end_chain(session, model, user_id, now=now)
                    mark_failed(
                        session,
                        model,
                        user_id,
                        error=str(exc),
                        now=now,
                        reauth=isinstance(exc, reauth_error),
                    )
                raise
            else:
                if was_paused:
                    end_chain(session, model, user_id, now=now)
        figures.update({k: v for k, v in vars(result).items() if k != "user_id"})
    return result
