"""The catch-up job (queue ``maintenance``): see :mod:`bgworkers.scheduling.catch_up`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from bgworkers import queues
from bgworkers.db.engine import session_scope, utcnow
from bgworkers.scheduling.catch_up import catch_up
from bgworkers.scheduling.claims import prune_runs
from bgworkers.scheduling.cron import floor_minute
from bgworkers.scheduling.middleware import TICK_OPTION, broker_periods, message_tick, period_of
from bgworkers.scheduling.pauses import paused_jobs
from bgworkers.scheduling.periodic import CronPeriod
from bgworkers.tasks import task

#: How long claimed runs are kept: well beyond the longest catch-up look-back (7 days), enough
#: for ``bgworkers schedule`` and an investigation; pruned once an hour by the catch-up job.
RUN_HISTORY = timedelta(days=14)


def resend_tick(broker: Any, period: CronPeriod, tick: datetime) -> None:
    """Send ``period``'s actor for an earlier ``tick``; the worker claims it like any tick."""
    stamp = tick.isoformat()
    broker.get_actor(period.name).send_with_options(
        scheduled_at=stamp, **{TICK_OPTION: stamp, "bgw_catch_up": True}
    )


@task(queue=queues.MAINTENANCE, periodic=True, max_retries=3, time_limit_ms=60_000)
def catch_up_missed_ticks() -> None:
    """Re-send ticks missed while the scheduler was down; hourly, prune old runs.

    Idempotent per tick: the claim runs it once, and a repeated tick finds no gap.
    """
    broker = dramatiq.get_broker()
    message = CurrentMessage.get_current_message()
    period = period_of(broker, "catch_up_missed_ticks")
    tick = message_tick(message, period) if message is not None and period is not None else None
    now = tick or floor_minute(utcnow())
    periods = broker_periods(broker)
    with session_scope() as session:
        paused = paused_jobs(session)  # a paused job's ticks are neither re-sent nor missed
        catch_up(
            session=session,
            periods=[p for p in periods if p.name not in paused],
            now=now,
            send=lambda p, t: resend_tick(broker, p, t),
        )
        if now.minute == 0:
            prune_runs(session=session, jobs=[p.name for p in periods], before=now - RUN_HISTORY)
