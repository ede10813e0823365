"""A scheduled tick that meets a database that does not answer is skipped, not dead-lettered.

Why: the schedule guard claims each tick in the database before the run. With PostgreSQL
stopped, that claim raised inside the middleware (dramatiq logged "Unexpected failure in
before_process_message" with a traceback per message), the job ran anyway, failed, and a
heartbeat tick (no retries) was dead-lettered while the dead-letter index could not record
it. A periodic job runs again at its next tick, and the catch-up job re-sends ticks missed
within a job's window, so the right answer to "the database is away" is to skip the tick and
count it: ``bgworkers_schedule_skipped_ticks_total{reason="database_unavailable"}``, and one
line a minute (per process: the interval belongs to the process's ``ScheduleGuard``) naming
the condition and the fix.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.intervals import LogInterval
from bgworkers.logs.loggers import get_logger
from bgworkers.scheduling.metrics import SCHEDULE_METRICS

log = get_logger("bgworkers.scheduling")

REASON: Final = "database_unavailable"
#: Seconds between two lines about the database being away.
LOG_INTERVAL_S: Final = 60.0


def is_database_away(exc: BaseException) -> bool:
    """Whether ``exc`` says the database did not answer (not a bad query or a constraint)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def skip_tick(job: str, tick: datetime, exc: BaseException, *, notices: LogInterval) -> None:
    """Count the skipped tick; log only when ``notices`` says it is due."""
    SCHEDULE_METRICS.get().skipped.labels(job, REASON).inc()
    _notice(
        notices,
        "scheduled_tick_skipped",
        job,
        tick,
        exc,
        "the database does not answer: start it or fix BGW_DATABASE_URL; the job runs again "
        "at its next tick, and ticks within its catch-up window are re-sent",
    )


def outcome_not_recorded(
    job: str, tick: datetime, exc: BaseException, *, notices: LogInterval
) -> None:
    """A run ended while the database was away: its claim stays until it goes stale."""
    _notice(
        notices,
        "scheduled_run_not_recorded",
        job,
        tick,
        exc,
        "the database does not answer: start it or fix BGW_DATABASE_URL; the run's claim "
        "expires after its time limit",
    )


def _notice(
    notices: LogInterval, event: str, job: str, tick: datetime, exc: BaseException, hint: str
) -> None:
    """One line per interval of ``notices``, saying how many were held back."""
    if not notices.due():
        return
    log.warning(
        event,
        job=job,
        tick=tick.isoformat(),
        reason=REASON,
        error=failure_reason(exc),
        hint=hint,
        similar_held_back=notices.held_back,
    )
