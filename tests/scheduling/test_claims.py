"""Claims on (job, tick): once per tick, no overlap, retries of a claimed tick allowed.

Runs on SQLite and on the real PostgreSQL (``db_engine``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from bgworkers.db.engine import session_scope
from bgworkers.scheduling.claims import Claim, claim_run, finish_run, prune_runs
from bgworkers.scheduling.models import ScheduledJobState, ScheduledRun

T1 = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)
T2 = T1 + timedelta(minutes=1)
NOW = T1 + timedelta(seconds=1)
LIMIT = timedelta(minutes=5)


def claim(tick: datetime, message_id: str, *, now: datetime = NOW) -> Claim:
    with session_scope() as session:
        return claim_run(
            session=session,
            job="backup_user_data",
            tick=tick,
            message_id=message_id,
            cron="0 1 * * 7",
            now=now,
            stale_after=LIMIT,
        )


def finish(tick: datetime, message_id: str, status: str) -> None:
    with session_scope() as session:
        finish_run(
            session=session,
            job="backup_user_data",
            tick=tick,
            message_id=message_id,
            status=status,
            now=NOW,
            duration_s=0.5,
            error="TransientError: boom" if status != "succeeded" else None,
        )


def run_row(tick: datetime) -> ScheduledRun:
    with session_scope() as session:
        row = session.get(ScheduledRun, ("backup_user_data", tick))
        assert row is not None
        return row


def test_a_tick_is_claimed_once(db_engine: Engine) -> None:
    assert claim(T1, "m-1") is Claim.CLAIMED
    assert claim(T1, "m-2") is Claim.DUPLICATE  # a second scheduler's message
    finish(T1, "m-1", "succeeded")
    assert claim(T1, "m-3") is Claim.DUPLICATE  # a restart inside the minute
    assert claim(T1, "m-1") is Claim.DUPLICATE  # a redelivery of the finished message
    row = run_row(T1)
    assert (row.status, row.message_id, row.attempts, row.duration_s) == (
        "succeeded",
        "m-1",
        1,
        0.5,
    )


def test_retries_of_the_claimed_message_run_again(db_engine: Engine) -> None:
    assert claim(T1, "m-1") is Claim.CLAIMED
    finish(T1, "m-1", "retrying")
    assert claim(T1, "m-1") is Claim.CLAIMED
    finish(T1, "m-1", "failed")
    row = run_row(T1)
    assert (row.status, row.attempts, row.error) == ("failed", 2, "TransientError: boom")


def test_the_next_tick_is_skipped_while_a_run_is_going(db_engine: Engine) -> None:
    assert claim(T1, "m-1") is Claim.CLAIMED
    assert claim(T2, "m-2") is Claim.OVERLAP
    assert run_row(T2).status == "skipped_overlap"
    assert claim(T2, "m-2") is Claim.DUPLICATE  # a skipped tick stays skipped
    finish(T1, "m-1", "succeeded")
    t3 = T2 + timedelta(minutes=1)
    assert claim(t3, "m-3") is Claim.CLAIMED
    with session_scope() as session:
        state = session.get(ScheduledJobState, "backup_user_data")
        assert state is not None
        assert (state.running_message_id, state.running_tick) == ("m-3", t3)


def test_a_retry_waits_while_a_later_tick_runs(db_engine: Engine) -> None:
    assert claim(T1, "m-1") is Claim.CLAIMED
    finish(T1, "m-1", "retrying")
    assert claim(T2, "m-2") is Claim.CLAIMED
    assert claim(T1, "m-1") is Claim.BUSY
    finish(T2, "m-2", "succeeded")
    assert claim(T1, "m-1") is Claim.CLAIMED


def test_a_lock_left_by_a_dead_worker_expires(db_engine: Engine) -> None:
    assert claim(T1, "m-1") is Claim.CLAIMED  # its worker dies: never finished
    later = NOW + LIMIT + timedelta(seconds=1)
    assert claim(T2, "m-2", now=later) is Claim.CLAIMED


def test_old_runs_are_pruned_per_job(db_engine: Engine) -> None:
    for tick, message_id in ((T1, "m-1"), (T2, "m-2")):
        assert claim(tick, message_id) is Claim.CLAIMED
        finish(tick, message_id, "succeeded")
    with session_scope() as session:
        assert prune_runs(session=session, jobs=["backup_user_data", "other"], before=T2) == 1
    with session_scope() as session:
        assert session.get(ScheduledRun, ("backup_user_data", T1)) is None
        assert session.get(ScheduledRun, ("backup_user_data", T2)) is not None
