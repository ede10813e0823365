"""Worker side of scheduling: one run per (job, tick), no overlap, outcome recorded.

What is guaranteed and how is in docs/scheduling.md (guarantees 2, 4, 5 and 7). This replaces
periodiq's ``PeriodiqMiddleware``, which acks without running any periodic message older than
``skip_delay`` (30 s), that message's own retries included: a failing periodic job was
silently dropped instead of retried and dead-lettered. Here age never drops a message; each
scheduled message claims its ``(job, tick)`` (:mod:`~.claims`) before it runs, and is skipped
as a duplicate, an overlap or a tick of a paused job (:mod:`~.pauses`; a run asked for by hand,
``bgw_manual``, still runs). On the scheduler side, ``before_enqueue`` stamps the tick into the
message (``bgw_tick``), so every delivery and retry names the same tick. Messages sent by hand
(no ``scheduled_at``) run as usual, unclaimed.

An attempt's claim lives on its message proxy (one per delivery), never in a dict keyed by
message id: a retry keeps the id and may be claimed on another thread before this attempt's
after-hook has run (the retry policy's after-hook, later in the stack, runs first).

A tick that meets a database that does not answer is skipped and counted, with one line a
minute per process (guarantee 7). Before, the claim raised inside the middleware (a traceback
per message), the job ran anyway and failed, and a heartbeat tick (no retries) was
dead-lettered while the dead-letter index could not record it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dramatiq import Broker, Message
from dramatiq.broker import MessageProxy
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import Middleware, SkipMessage
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from bgworkers.db.engine import session_scope, utcnow
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.intervals import LogInterval
from bgworkers.logs.loggers import get_logger
from bgworkers.logs.redaction import redact_text
from bgworkers.middleware.retry_policy import outcome_of
from bgworkers.scheduling.claims import Claim, claim_run, finish_run
from bgworkers.scheduling.metrics import SCHEDULE_METRICS
from bgworkers.scheduling.pauses import JobPause
from bgworkers.scheduling.periodic import CronPeriod

log = get_logger("bgworkers.scheduling")

#: Message option carrying the tick (ISO 8601, UTC) a scheduled message belongs to.
TICK_OPTION = "bgw_tick"
#: Message option of a run asked for by hand (``bgworkers jobs run``): runs even when paused.
MANUAL_OPTION = "bgw_manual"
#: Added to an actor's time limit: a lock older than that belongs to a dead worker.
_LOCK_MARGIN = timedelta(seconds=60)
#: How long a retry waits when the job's next tick is running, in seconds.
BUSY_RETRY_AFTER_S = 30.0
#: Message option counting those waits; separate from ``retries``, the retry policy's budget.
BUSY_RETRIES_OPTION = "bgw_busy_retries"
#: Attribute of the message proxy holding the attempt in progress (:class:`_Attempt`).
_ATTEMPT_ATTR = "bgw_schedule_attempt"
_STATUS = {"succeeded": "succeeded", "retried": "retrying", "dead_lettered": "failed"}
#: Seconds between two lines about the database being away.
LOG_INTERVAL_S = 60.0
_DATABASE_AWAY = "the database does not answer: start it or fix BGW_DATABASE_URL; "


def is_database_away(exc: BaseException) -> bool:
    """Whether ``exc`` says the database did not answer (not a bad query or a constraint)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def skip_tick(job: str, tick: datetime, exc: BaseException, *, notices: LogInterval) -> None:
    """Count a tick skipped for the database being away; log only when ``notices`` says so."""
    SCHEDULE_METRICS.get().skipped.labels(job, "database_unavailable").inc()
    hint = "the job runs again at its next tick, and ticks within its catch-up window are re-sent"
    _database_notice(notices, "scheduled_tick_skipped", job, tick, exc, hint)


def outcome_not_recorded(
    job: str, tick: datetime, exc: BaseException, *, notices: LogInterval
) -> None:
    """A run ended while the database was away: its claim stays until it goes stale."""
    hint = "the run's claim expires after its time limit"
    _database_notice(notices, "scheduled_run_not_recorded", job, tick, exc, hint)


def _database_notice(
    notices: LogInterval, event: str, job: str, tick: datetime, exc: BaseException, hint: str
) -> None:
    """One line per interval of ``notices``, saying how many were held back."""
    if notices.due():
        log.warning(
            event,
            job=job,
            tick=tick.isoformat(),
            reason="database_unavailable",
            error=failure_reason(exc),
            hint=_DATABASE_AWAY + hint,
            similar_held_back=notices.held_back,
        )


def period_of(broker: Broker, actor_name: str) -> CronPeriod | None:
    try:
        actor = broker.get_actor(actor_name)
    except ActorNotFound:
        return None
    period = actor.options.get("periodic")
    return period if isinstance(period, CronPeriod) else None


def broker_periods(broker: Broker) -> list[CronPeriod]:
    """The ``periodic`` option of every periodic actor of ``broker``, in declaration order."""
    # ``actors``, not ``get_declared_actors()``: a set, whose order changes with each
    # process's string hashes (``bgworkers jobs`` listed the jobs shuffled). Copied first: an
    # actor declared by another thread meanwhile must not break the walk.
    periods = [period_of(broker, name) for name in list(broker.actors)]
    return [p for p in periods if p is not None]


def message_tick(message: Message[Any] | MessageProxy, period: CronPeriod) -> datetime | None:
    """The tick a message belongs to, or None for a message sent by hand."""
    stamped = message.options.get(TICK_OPTION)
    if stamped:
        return datetime.fromisoformat(stamped)
    scheduled = message.options.get("scheduled_at")
    return period.tick_at(datetime.fromisoformat(scheduled)) if scheduled else None


def scheduled_now(*, fallback: datetime) -> datetime:
    """The tick of the scheduled message being processed, or ``fallback`` for any other.

    Why: a job that decides by the time ("is it 08:00 for this user?") must judge by the tick
    the scheduler sent, not by the worker's own clock, which may be a second behind (the 08:00
    run would then see 07:59:59) or minutes late (a backlog, a retry, a caught-up tick).
    The tick is the one :meth:`ScheduleGuard.before_enqueue` stamped into the message
    (``bgw_tick``); needs dramatiq's ``CurrentMessage`` middleware (in bgworkers' stack).
    """
    from dramatiq.middleware import CurrentMessage

    message = CurrentMessage.get_current_message()
    stamped = message.options.get(TICK_OPTION) if message is not None else None
    return datetime.fromisoformat(stamped) if stamped else fallback


def job_is_paused(job: str) -> bool:
    with session_scope() as session:
        return session.get(JobPause, job) is not None


def max_busy_retries(stale_after: timedelta) -> int:
    """How many times a retry waits for a later tick's run: long enough for that run to end
    or for its lock to go stale (``stale_after``), then the retry gives up."""
    return math.ceil(stale_after.total_seconds() / BUSY_RETRY_AFTER_S)


@dataclass(frozen=True)
class _Attempt:
    """A claimed run in progress; kept on the message proxy, which is one per delivery."""

    job: str
    tick: datetime
    claimed_at: datetime
    started: float  # time.perf_counter(), seconds


class ScheduleGuard(Middleware):
    """Stamps each scheduled message with its tick when periodiq sends it, claims the tick
    before the run (a second delivery of the same tick is skipped), records the outcome after."""

    def __init__(self, *, database_notices: LogInterval | None = None) -> None:
        """``database_notices``: when to log that the database is away (default: one line
        a minute for this middleware, i.e. per worker process)."""
        self.database_notices = database_notices or LogInterval(LOG_INTERVAL_S)

    @property
    def actor_options(self) -> set[str]:
        return {"periodic"}

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: int) -> None:
        if TICK_OPTION in message.options or "scheduled_at" not in message.options:
            return
        period = period_of(broker, message.actor_name)
        tick = message_tick(message, period) if period is not None else None
        if tick is not None:
            message.options[TICK_OPTION] = tick.isoformat()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        period = period_of(broker, message.actor_name)
        if period is None:
            return  # most messages: not a scheduled job's
        tick = message_tick(message, period)
        if tick is None:
            return
        try:
            self._claim_or_skip(broker, message, period, tick)
        except DBAPIError as exc:  # OperationalError and InterfaceError among them
            if not is_database_away(exc):
                raise
            # Not run, not dead-lettered: see the module docstring.
            skip_tick(period.name, tick, exc, notices=self.database_notices)
            raise SkipMessage() from None

    def _claim_or_skip(
        self, broker: Broker, message: MessageProxy, period: CronPeriod, tick: datetime
    ) -> None:
        if not message.options.get(MANUAL_OPTION) and job_is_paused(period.name):
            SCHEDULE_METRICS.get().skipped.labels(period.name, "paused").inc()
            log.info(
                "scheduled_tick_skipped", job=period.name, tick=tick.isoformat(), reason="paused"
            )
            raise SkipMessage()
        actor = broker.get_actor(message.actor_name)
        time_limit_ms = message.options.get("time_limit", actor.options.get("time_limit", 600_000))
        stale_after = timedelta(milliseconds=time_limit_ms) + _LOCK_MARGIN
        now = utcnow()
        with session_scope() as session:
            claim = claim_run(
                session=session,
                job=period.name,
                tick=tick,
                message_id=message.message_id,
                cron=period.cron,
                now=now,
                stale_after=stale_after,
            )
        if claim is Claim.CLAIMED:
            setattr(message, _ATTEMPT_ATTR, _Attempt(period.name, tick, now, time.perf_counter()))
            log.info("scheduled_run_started", job=period.name, tick=tick.isoformat())
            return
        if claim is Claim.BUSY:
            self._wait_for_later_tick(broker, message, period, tick, stale_after)
        SCHEDULE_METRICS.get().skipped.labels(period.name, claim.value).inc()
        # A duplicate is routine with two schedulers; an overlap means a job outgrew its period.
        level = "info" if claim is Claim.DUPLICATE else "warning"
        getattr(log, level)(
            "scheduled_tick_skipped", job=period.name, tick=tick.isoformat(), reason=claim.value
        )
        raise SkipMessage()

    def _wait_for_later_tick(
        self,
        broker: Broker,
        message: Any,
        period: CronPeriod,
        tick: datetime,
        stale_after: timedelta,
    ) -> None:
        """A retry found a later tick running: send it again later, outside the retry budget.

        The retry policy would count the wait as a failed attempt, and dead-letter the retry
        for being busy rather than for its own error. After :func:`max_busy_retries` waits the
        tick is recorded ``failed`` and the message dead-lettered.
        """
        waits = message.options.get(BUSY_RETRIES_OPTION, 0)
        if waits < max_busy_retries(stale_after):
            message.options[BUSY_RETRIES_OPTION] = waits + 1
            broker.enqueue(message, delay=int(BUSY_RETRY_AFTER_S * 1000))
            log.info("scheduled_retry_waiting", job=period.name, tick=tick.isoformat(), wait=waits)
            raise SkipMessage()  # acked: the copy just enqueued carries on
        with session_scope() as session:
            finish_run(
                session=session,
                job=period.name,
                tick=tick,
                message_id=message.message_id,
                status="failed",
                now=utcnow(),
                duration_s=0.0,
                error=f"a later tick of {period.name} kept running",
            )
        metrics = SCHEDULE_METRICS.get()
        metrics.runs.labels(period.name, "dead_lettered").inc()
        metrics.failures.labels(period.name).inc()
        log.error("scheduled_run_gave_up", job=period.name, tick=tick.isoformat(), reason="busy")
        message.fail()
        raise SkipMessage()

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        attempt: _Attempt | None = message.__dict__.get(_ATTEMPT_ATTR)
        if attempt is None:
            return
        job, tick = attempt.job, attempt.tick
        duration_s = time.perf_counter() - attempt.started
        outcome = outcome_of(message, exception)
        now = utcnow()
        # The stored error is what an operator reads: the log line's short reason, never a
        # database error's statement and the values bound to it, nor a credential.
        error = redact_text(failure_reason(exception)) if exception is not None else None
        try:
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
                    claimed_at=attempt.claimed_at,
                )
        except DBAPIError as exc:
            if not is_database_away(exc):
                raise
            # The claim stays 'running' and goes stale after the time limit; a retry (or the
            # next tick) claims it again. Counted as the run's outcome below all the same.
            outcome_not_recorded(job, tick, exc, notices=self.database_notices)
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

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        attempt: _Attempt | None = message.__dict__.get(_ATTEMPT_ATTR)
        if attempt is not None:  # claimed, then skipped by a later middleware: free the lock
            with session_scope() as session:
                finish_run(
                    session=session,
                    job=attempt.job,
                    tick=attempt.tick,
                    message_id=message.message_id,
                    status="failed" if message.failed else "retrying",
                    now=utcnow(),
                    duration_s=time.perf_counter() - attempt.started,
                    claimed_at=attempt.claimed_at,
                )
