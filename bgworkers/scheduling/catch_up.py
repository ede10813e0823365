"""Catch-up: ticks missed while no scheduler was running, re-sent within each job's window.

How a gap is seen: the ``catch_up_missed_ticks`` job runs every minute, sent by the same
scheduler as every other job. Each run stores its tick as ``checked_until``; when a run finds
the previous one more than a minute older, no scheduler sent anything in between. For every
periodic job, each tick inside that gap that no worker has claimed is either

* re-sent once, stamped with its own tick, when ``now - tick`` is within the job's
  ``catch_up_window`` (the claim on ``(job, tick)`` makes a re-send that races a late
  original harmless), or
* counted and logged as missed (the tick is not recorded as claimed: should its original
  message still arrive, it runs).

The gap excludes its end ``now`` (that tick is being sent) and, for jobs without a window, its
start. For jobs with a window it includes its start, the previous catch-up tick: periodiq
sends the jobs of a tick in declaration order and the catch-up job is declared last, so a
scheduler that died inside a tick has sent that tick's catch-up job only if it sent every
other job of the tick; the start is looked at again anyway, a re-send of a tick that ran
being a duplicate the claim skips.

Re-sends happen between two transactions: ``checked_until`` advances, and missed ticks are
counted, only once every re-send was published, so a publish that fails part-way is redone
by the retry of the catch-up message instead of being lost.

``now`` is the catch-up run's own tick, so the decision does not depend on how late the
worker picked the message up. A gap longer than ``MAX_GAP`` is only looked at over its last
``MAX_GAP``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from bgworkers.db import after_commit
from bgworkers.logs import get_logger
from bgworkers.scheduling.claims import job_state
from bgworkers.scheduling.metrics import SCHEDULE_METRICS
from bgworkers.scheduling.models import ScheduledRun
from bgworkers.scheduling.periodic import CronPeriod

log = get_logger("bgworkers.scheduling")

CATCH_UP_JOB = "catch_up_missed_ticks"
MAX_GAP = timedelta(days=7)
_MINUTE = timedelta(minutes=1)


@dataclass
class CatchUpResult:
    gap: tuple[datetime, datetime] | None = None
    resent: list[tuple[str, datetime]] = field(default_factory=list)
    missed: dict[str, int] = field(default_factory=dict)


def catch_up(
    *,
    session: Session,
    periods: Iterable[CronPeriod],
    now: datetime,
    send: Callable[[CronPeriod, datetime], None],
) -> CatchUpResult:
    """Look for a gap before ``now`` (a tick); re-send or count its unclaimed ticks.

    Two transactions around the sends, so a send that fails loses nothing: the first only
    reads (and commits, releasing the catch-up row's lock before talking to RabbitMQ),
    ``send(period, tick)`` is then called once per re-sent tick, and only after every send
    succeeded does the second advance ``checked_until`` and count the missed ticks. When a
    send raises, ``checked_until`` is unchanged and the retry of this tick finds the same gap:
    ticks already re-sent go again unless claimed meanwhile (the claim makes the copy harmless).
    """
    result = CatchUpResult()
    mark = job_state(session, CATCH_UP_JOB)
    previous = mark.checked_until
    if previous is not None and previous >= now:
        return result  # an older catch-up tick delivered late: a newer one already looked
    if previous is None or now - previous <= _MINUTE:
        mark.checked_until = now
        session.add(mark)
        return result
    start = max(previous, now - MAX_GAP)
    result.gap = (start, now)
    to_send: list[tuple[CronPeriod, datetime]] = []
    missed: list[tuple[CronPeriod, list[datetime]]] = []
    for period in periods:
        if period.name == CATCH_UP_JOB:
            continue
        window = period.job.catch_up_window
        # The boundary tick too, for jobs that catch up: the scheduler may have died inside
        # that tick after sending the catch-up job, but not before the jobs sent after it.
        lower = start - _MINUTE if window > timedelta(0) and start == previous else start
        ticks = period.ticks_between(lower, now)
        if not ticks:
            continue
        claimed = set(
            session.exec(
                select(ScheduledRun.tick).where(
                    ScheduledRun.job == period.name,
                    col(ScheduledRun.tick) > lower,
                    col(ScheduledRun.tick) < now,
                )
            )
        )
        late = [t for t in ticks if t not in claimed]
        to_send += [(period, t) for t in late if now - t <= window]
        too_old = [t for t in late if now - t > window]
        if too_old:
            missed.append((period, too_old))
    session.commit()
    result.resent = [(p.name, t) for p, t in to_send]
    log.warning(
        "scheduler_gap_found",
        gap_start=start.isoformat(),
        gap_end=now.isoformat(),
        resent=len(to_send),
        missed=sum(len(ticks) for _, ticks in missed),
    )
    metrics = SCHEDULE_METRICS.get()
    for period, tick in to_send:
        send(period, tick)
        metrics.caught_up.labels(period.name).inc()
        log.info("scheduled_tick_caught_up", job=period.name, tick=tick.isoformat())
    mark = job_state(session, CATCH_UP_JOB)
    checked = mark.checked_until
    if checked is not None and checked >= now:
        return result  # a newer catch-up covered this gap meanwhile, and counted its misses
    mark.checked_until = now
    session.add(mark)
    for period, too_old in missed:
        # Only ticks after what another catch-up checked meanwhile: each miss counted once.
        ticks = [t for t in too_old if checked is None or t > checked]
        if ticks:
            _record_missed(session, period, ticks, period.job.catch_up_window)
            result.missed[period.name] = len(ticks)

    def count_missed() -> None:
        for name, count in result.missed.items():
            metrics.missed.labels(name).inc(count)

    after_commit(session, count_missed)
    return result


def _record_missed(
    session: Session, period: CronPeriod, missed: list[datetime], window: timedelta
) -> None:
    state = job_state(session, period.name)
    state.missed_ticks += len(missed)
    state.last_missed_tick = max(filter(None, (state.last_missed_tick, missed[-1])))
    session.add(state)
    log.warning(
        "scheduled_ticks_missed",
        job=period.name,
        count=len(missed),
        first=missed[0].isoformat(),
        last=missed[-1].isoformat(),
        catch_up_window_s=window.total_seconds(),
    )
