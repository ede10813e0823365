"""Claiming a (job, tick) before running it: once per tick, and no overlapping runs.

Why in the database: the schedulers and the workers are separate processes (two schedulers
for availability, several workers), and RabbitMQ delivers at least once. The primary key of
``scheduled_runs`` makes a second claim of the same tick fail whatever sent it; the
``scheduled_job_state`` row of a job is its lock while a run is in progress. Both are taken
in one short transaction before the actor runs.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from sqlmodel import Session, col, delete

from bgworkers.db.engine import insert_if_absent
from bgworkers.scheduling.models import ScheduledJobState, ScheduledRun

#: A run in one of these states is never started again for the same tick.
_DONE = frozenset({"succeeded", "skipped_overlap"})


class Claim(enum.Enum):
    CLAIMED = "claimed"  # run it
    DUPLICATE = "duplicate"  # another message owns this tick, or it already succeeded
    OVERLAP = "overlap"  # the job's previous run is still going: this tick is skipped
    BUSY = "busy"  # a retry of this tick while another run is going: retry later


def job_state(session: Session, job: str) -> ScheduledJobState:
    """The job's state row, created if missing, locked for this transaction."""
    insert_if_absent(session, ScheduledJobState, job=job, missed_ticks=0)
    state = session.get(ScheduledJobState, job, with_for_update=True, populate_existing=True)
    assert state is not None
    return state


def claim_run(
    *,
    session: Session,
    job: str,
    tick: datetime,
    message_id: str,
    cron: str,
    now: datetime,
    stale_after: timedelta,
) -> Claim:
    """Claim ``(job, tick)`` for ``message_id``; see :class:`Claim` for the answers.

    The same message may claim again (a retry, or a redelivery after a worker died) unless
    its run already succeeded. A lock older than ``stale_after`` (the actor's time limit plus
    a margin) is taken over: its worker died without releasing it.
    """
    inserted = insert_if_absent(
        session,
        ScheduledRun,
        job=job,
        tick=tick,
        status="claimed",
        message_id=message_id,
        cron=cron,
        attempts=0,
        claimed_at=now,
    )
    run = session.get(ScheduledRun, (job, tick), with_for_update=True, populate_existing=True)
    assert run is not None
    if run.message_id != message_id or run.status in _DONE:
        return Claim.DUPLICATE
    state = job_state(session, job)
    held = state.running_message_id not in (None, message_id)
    if held and state.running_since is not None and state.running_since > now - stale_after:
        if not inserted:
            return Claim.BUSY
        run.status = "skipped_overlap"
        run.finished_at = now
        session.add(run)
        return Claim.OVERLAP
    state.running_message_id, state.running_tick, state.running_since = message_id, tick, now
    run.status = "running"
    run.attempts += 1
    session.add_all([state, run])
    return Claim.CLAIMED


def finish_run(
    *,
    session: Session,
    job: str,
    tick: datetime,
    message_id: str,
    status: str,
    now: datetime,
    duration_s: float,
    error: str | None = None,
    claimed_at: datetime | None = None,
) -> None:
    """Record an attempt's outcome (``succeeded``, ``retrying``, ``failed``); free the lock.

    ``claimed_at`` is the ``now`` this attempt claimed with. A retry keeps the message id and
    may claim again before this attempt's outcome is recorded (the retry policy re-enqueues it
    first); when the lock shows a later claim by the same message, that retry owns the run
    and its lock, and this attempt records nothing.
    """
    # Row locks in claim_run's order (run, then state): no deadlock between the two.
    run = session.get(ScheduledRun, (job, tick), with_for_update=True, populate_existing=True)
    state = session.get(ScheduledJobState, job, with_for_update=True, populate_existing=True)
    mine = state is not None and state.running_message_id == message_id
    if mine and claimed_at is not None and state is not None and state.running_since != claimed_at:
        return
    if run is not None and run.message_id == message_id:
        run.status = status
        run.finished_at = now
        run.duration_s = duration_s
        run.error = error[:500] if error else None
        session.add(run)
    if mine and state is not None:
        state.running_message_id = state.running_tick = state.running_since = None
        session.add(state)


def prune_runs(*, session: Session, jobs: list[str], before: datetime) -> int:
    """Delete the runs of ``jobs`` whose tick is older than ``before``; return how many.

    One statement per job so the primary key ``(job, tick)`` serves each range.
    """
    deleted = 0
    for job in jobs:
        statement = delete(ScheduledRun).where(
            col(ScheduledRun.job) == job, col(ScheduledRun.tick) < before
        )
        deleted += session.exec(statement).rowcount
    return deleted
