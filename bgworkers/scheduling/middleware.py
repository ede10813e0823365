"""Worker side of scheduling: one run per (job, tick), no overlap, outcome recorded.

Replaces periodiq's ``PeriodiqMiddleware``, which acks without running any periodic message
older than ``skip_delay`` (30 s), including that message's own retries: a failing periodic
job was silently dropped instead of retried and dead-lettered. Here age never drops a message;
instead each scheduled message claims its ``(job, tick)`` (:mod:`~.claims`) before it runs:

* the tick already belongs to another message (two schedulers, a restart inside the minute, a
  catch-up racing the real tick) or already succeeded: skipped, ``reason="duplicate"``;
* the job's previous run is still going: this tick is skipped, ``reason="overlap"``;
* a retry of a claimed tick runs again (same message id, same tick) under the retry policy.

On the scheduler side, ``before_enqueue`` stamps the tick into the message (``bgw_tick``),
computed with the scheduler's clock, so every delivery and retry names the same tick.
Messages sent by hand (no ``scheduled_at``) run as usual, unclaimed.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from dramatiq.errors import ActorNotFound
from dramatiq.middleware import Middleware, SkipMessage

from bgworkers.db import session_scope, utcnow
from bgworkers.errors import TransientError
from bgworkers.logs import get_logger
from bgworkers.middleware.message_logging import outcome_of
from bgworkers.scheduling.claims import Claim, claim_run, finish_run
from bgworkers.scheduling.metrics import SCHEDULE_METRICS
from bgworkers.scheduling.periodic import CronPeriod

log = get_logger("bgworkers.scheduling")

#: Message option carrying the tick (ISO 8601, UTC) a scheduled message belongs to.
TICK_OPTION = "bgw_tick"
#: Added to an actor's time limit: a lock older than that belongs to a dead worker.
_LOCK_MARGIN = timedelta(seconds=60)
#: How long a retry waits when the job's next tick is running, in seconds.
BUSY_RETRY_AFTER_S = 30.0
_STATUS = {"succeeded": "succeeded", "retried": "retrying", "dead_lettered": "failed"}


def period_of(broker: Any, actor_name: str) -> CronPeriod | None:
    try:
        actor = broker.get_actor(actor_name)
    except ActorNotFound:
        return None
    period = actor.options.get("periodic")
    return period if isinstance(period, CronPeriod) else None


def message_tick(message: Any, period: CronPeriod) -> datetime | None:
    """The tick a message belongs to, or None for a message sent by hand."""
    stamped = message.options.get(TICK_OPTION)
    if stamped:
        return datetime.fromisoformat(stamped)
    scheduled = message.options.get("scheduled_at")
    return period.tick_at(datetime.fromisoformat(scheduled)) if scheduled else None


class ScheduleGuard(Middleware):
    def __init__(self) -> None:
        self._runs: dict[str, tuple[str, datetime, float]] = {}

    @property
    def actor_options(self) -> set[str]:
        return {"periodic"}

    def before_enqueue(self, broker: Any, message: Any, delay: int) -> None:
        if TICK_OPTION in message.options or "scheduled_at" not in message.options:
            return
        period = period_of(broker, message.actor_name)
        tick = message_tick(message, period) if period is not None else None
        if tick is not None:
            message.options[TICK_OPTION] = tick.isoformat()

    def before_process_message(self, broker: Any, message: Any) -> None:
        period = period_of(broker, message.actor_name)
        tick = message_tick(message, period) if period is not None else None
        if period is None or tick is None:
            return
        actor = broker.get_actor(message.actor_name)
        time_limit_ms = message.options.get("time_limit", actor.options.get("time_limit", 600_000))
        with session_scope() as session:
            claim = claim_run(
                session=session,
                job=period.name,
                tick=tick,
                message_id=message.message_id,
                cron=period.cron,
                now=utcnow(),
                stale_after=timedelta(milliseconds=time_limit_ms) + _LOCK_MARGIN,
            )
        if claim is Claim.CLAIMED:
            self._runs[message.message_id] = (period.name, tick, time.perf_counter())
            log.info("scheduled_run_started", job=period.name, tick=tick.isoformat())
            return
        if claim is Claim.BUSY:
            raise TransientError(
                f"{period.name}: a later tick is running", retry_after_s=BUSY_RETRY_AFTER_S
            )
        SCHEDULE_METRICS.get().skipped.labels(period.name, claim.value).inc()
        # A duplicate is routine with two schedulers; an overlap means a job outgrew its period.
        level = "info" if claim is Claim.DUPLICATE else "warning"
        getattr(log, level)(
            "scheduled_tick_skipped", job=period.name, tick=tick.isoformat(), reason=claim.value
        )
        raise SkipMessage()

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        entry = self._runs.pop(message.message_id, None)
        if entry is None:
            return
        job, tick, started = entry
        duration_s = time.perf_counter() - started
        outcome = outcome_of(message, exception)
        now = utcnow()
        error = f"{type(exception).__name__}: {exception}" if exception is not None else None
        with session_scope() as session:
            finish_run(
                session=session,
                job=job,
                tick=tick,
                message_id=message.message_id,
                status=_STATUS[outcome],
                now=now,
                duration_s=duration_s,
                error=error,
            )
        metrics = SCHEDULE_METRICS.get()
        metrics.runs.labels(job, outcome).inc()
        metrics.last_duration.labels(job).set(duration_s)
        if exception is not None:
            metrics.failures.labels(job).inc()
        if outcome == "succeeded":
            metrics.last_success.labels(job).set(now.timestamp())
        level = {"succeeded": "info", "retried": "warning"}.get(outcome, "error")
        getattr(log, level)(
            "scheduled_run_finished",
            job=job,
            tick=tick.isoformat(),
            outcome=outcome,
            duration_s=round(duration_s, 6),
            error=error,
        )

    def after_skip_message(self, broker: Any, message: Any) -> None:
        entry = self._runs.pop(message.message_id, None)
        if entry is not None:  # claimed, then skipped by a later middleware: free the lock
            with session_scope() as session:
                finish_run(
                    session=session,
                    job=entry[0],
                    tick=entry[1],
                    message_id=message.message_id,
                    status="failed" if message.failed else "retrying",
                    now=utcnow(),
                    duration_s=time.perf_counter() - entry[2],
                )
