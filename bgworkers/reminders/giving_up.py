"""When ``fire_reminder`` gives up on a reminder, the reminder is closed as failed.

Why: a reminder whose firing always raises (an occurrence the formatting cannot write, year 1
west of UTC) stayed ``scheduled`` and due after its message was dead-lettered, so the minute
check handed it out again every :data:`~bgworkers.reminders.firing.REDISPATCH_AFTER`, for
ever, each time to be dead-lettered again. Closing it as ``failed`` (``last_error`` says why,
the failed counter and one ``reminder_failed`` line, as for the failures firing foresees) ends
that loop.

When: the message gives up (its last attempt, or a :class:`~bgworkers.errors.PermanentError`,
dead-lettered at once) on a failure that is not an outage. An outage (the database or the
broker away, a time limit) says nothing about the reminder: it is never closed for one, and
the check hands it out again once the message is dead-lettered, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

from sqlmodel import Session

from bgworkers.errors import PermanentError
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.loggers import get_logger
from bgworkers.reminders.firing import Outcome, close_as_failed
from bgworkers.reminders.outages import is_outage

log = get_logger(__name__)


def gives_up(exc: BaseException, *, final_attempt: bool) -> bool:
    """Whether a message that raised ``exc`` gives up on its reminder for good."""
    if is_outage(exc):
        return False
    return final_attempt or isinstance(exc, PermanentError)


def close_if_given_up(
    reminder_id: int,
    exc: BaseException,
    *,
    final_attempt: bool,
    open_session: Callable[[], AbstractContextManager[Session]],
    now: datetime,
) -> Outcome | None:
    """Close the reminder as failed if its message gives up on ``exc``; None if it does not.

    ``open_session`` gives a fresh transaction (the one that raised is rolled back). A close
    that fails is logged and not raised: the caller re-raises ``exc``, whose policy (retry or
    dead-letter) must not change because the close failed; the reminder stays due and is
    handed out again.
    """
    if not gives_up(exc, final_attempt=final_attempt):
        return None
    problem = f"firing failed: {failure_reason(exc)}"
    try:
        with open_session() as session:
            return close_as_failed(reminder_id, problem, session=session, now=now)
    except Exception as close_error:  # noqa: BLE001 - the message's own failure is what propagates
        log.error(
            "reminder_not_closed",
            reminder_id=reminder_id,
            error=failure_reason(close_error),
            cause=problem,
        )
        return None
