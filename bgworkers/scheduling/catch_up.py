"""Catch-up: ticks missed while no scheduler was running, re-sent within each job's window.

docs/scheduling.md (guarantee 3) says which ticks are re-sent, which are counted as missed, and
why a gap includes its start for jobs with a window. How a gap is seen: the
``catch_up_missed_ticks`` job runs every minute, sent by the same scheduler as every other job,
and stores its tick as ``checked_until``; a run that finds the previous one more than a minute
older finds that no scheduler sent anything in between. ``now`` is the catch-up run's own tick,
so the decision does not depend on how late the worker picked the message up. A gap longer than
``MAX_GAP`` is only looked at over its last ``MAX_GAP``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from bgworkers.db.engine import after_commit
from bgworkers.logs.loggers import get_logger
from bgworkers.scheduling.claims import job_state
from bgworkers.scheduling.metrics import SCHEDULE_METRICS
from bgworkers.scheduling.models import ScheduledRun
from bgworkers.scheduling.periodic import CronPeriod

log = get_logger("bgworkers.scheduling")

CATCH_UP_JOB = "catch_up_missed_ticks"
MAX_GAP = timedelta(days=7)
_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Gap:
    """Ticks in ``[start, end)`` went unsent; ``previous`` is the last catch-up run's tick
    (``start`` is later than it when the gap is longer than :data:`MAX_GAP`)."""

    start: datetime
    end: datetime
    previous: datetime


#: A tick to re-send, or a period's ticks too old for its window.
Resend = tuple[CronPeriod, datetime]
Missed = tuple[CronPeriod, list[datetime]]


def catch_up(
    *,
    session: Session,
    periods: Iterable[CronPeriod],
    now: datetime,
    send: Callable[[CronPeriod, datetime], None],
) -> None:
    """Look for a gap before ``now`` (a tick); re-send or count its unclaimed ticks.

    Two transactions around the sends, so a send that fails loses nothing (docs/scheduling.md,
    guarantee 3): the first only reads, and commits, releasing the catch-up row's lock before
    talking to RabbitMQ; ``send(period, tick)`` is called once per re-sent tick; only then does
    the second advance ``checked_until`` and count the missed ticks.
    """
    gap = find_gap(session, now)
    if gap is None:
        return
    to_send, missed = sort_unclaimed_ticks(session, periods, gap)
    session.commit()
    log.warning(
        "scheduler_gap_found",
        gap_start=gap.start.isoformat(),
        gap_end=gap.end.isoformat(),
        resent=len(to_send),
        missed=sum(len(ticks) for _, ticks in missed),
    )
    metrics = SCHEDULE_METRICS.get()
    for period, tick in to_send:  # stamped with its own tick; a failure propagates, see above
        send(period, tick)
        metrics.caught_up.labels(period.name).inc()
        log.info("scheduled_tick_caught_up", job=period.name, tick=tick.isoformat())
    record_missed(session, missed, now=now)


def find_gap(session: Session, now: datetime) -> Gap | None:
    """The gap since the previous catch-up run, or None when there is none to look at.

    None when a newer run already looked (an older tick delivered late: nothing changes),
    and on the first run or a run a minute after the previous one, which just records ``now``
    as ``checked_until``. A gap is only looked at over its last :data:`MAX_GAP`.
    """
    mark = job_state(session, CATCH_UP_JOB)
    previous = mark.checked_until
    if previous is not None and previous >= now:
        return None
    if previous is None or now - previous <= _MINUTE:
        mark.checked_until = now
        session.add(mark)
        return None
    return Gap(start=max(previous, now - MAX_GAP), end=now, previous=previous)


def sort_unclaimed_ticks(
    session: Session, periods: Iterable[CronPeriod], gap: Gap
) -> tuple[list[Resend], list[Missed]]:
    """Every job's unclaimed ticks in the gap: those within the job's window, to re-send, and
    per job those older than it, to record as missed. The catch-up job itself is left out."""
    to_send: list[Resend] = []
    missed: list[Missed] = []
    for period in periods:
        if period.name == CATCH_UP_JOB:
            continue
        window = period.job.catch_up_window
        late = unclaimed_ticks(session, period, gap)
        to_send += [(period, t) for t in late if gap.end - t <= window]
        too_old = [t for t in late if gap.end - t > window]
        if too_old:
            missed.append((period, too_old))
    return to_send, missed


def unclaimed_ticks(session: Session, period: CronPeriod, gap: Gap) -> list[datetime]:
    """The job's ticks in the gap that no worker has claimed, oldest first.

    For a job with a window the boundary tick counts too: the scheduler may have died inside
    that tick after sending the catch-up job, but not before the jobs sent after it.
    """
    window = period.job.catch_up_window
    catches_up = window > timedelta(0) and gap.start == gap.previous
    lower = gap.start - _MINUTE if catches_up else gap.start
    ticks = period.ticks_between(lower, gap.end)
    if not ticks:
        return []
    claimed = set(
        session.exec(
            select(ScheduledRun.tick).where(
                ScheduledRun.job == period.name,
                col(ScheduledRun.tick) > lower,
                col(ScheduledRun.tick) < gap.end,
            )
        )
    )
    return [t for t in ticks if t not in claimed]


def record_missed(session: Session, missed: list[Missed], *, now: datetime) -> None:
    """Advance ``checked_until`` to ``now`` and record the ticks too old to re-send (counted in
    metrics once the transaction commits).

    Records nothing if a newer catch-up covered this gap meanwhile (it counted the misses),
    and only ticks after what another catch-up checked meanwhile: each miss counted once.
    """
    mark = job_state(session, CATCH_UP_JOB)
    checked = mark.checked_until
    if checked is not None and checked >= now:
        return
    mark.checked_until = now
    session.add(mark)
    recorded: dict[str, int] = {}
    for period, too_old in missed:
        ticks = [t for t in too_old if checked is None or t > checked]
        if not ticks:
            continue
        state = job_state(session, period.name)
        state.missed_ticks += len(ticks)
        state.last_missed_tick = max(filter(None, (state.last_missed_tick, ticks[-1])))
        session.add(state)
        log.warning(
            "scheduled_ticks_missed",
            job=period.name,
            count=len(ticks),
            first=ticks[0].isoformat(),
            last=ticks[-1].isoformat(),
            catch_up_window_s=period.job.catch_up_window.total_seconds(),
        )
        recorded[period.name] = len(ticks)
    metrics = SCHEDULE_METRICS.get()

    def count_missed() -> None:
        for name, count in recorded.items():
            metrics.missed.labels(name).inc(count)

    after_commit(session, count_missed)
