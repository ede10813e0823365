"""A page message whose transaction fails as a whole hands each of its items on alone.

Why: a page (``fire_reminder_page``, ``send_daily_summary_page``) writes its items with
set-based statements in one transaction. The per-item guard of a page catches an item whose
own data trips the code, not a statement that fails for the page: a constraint the database
enforces on one reminder's email fails the page's one INSERT. Such a page failed again on
every retry, was dead-lettered, and was handed out again by the next check with the same
items, for ever: one poisoned reminder held back the other 49 of its page and was never
closed, and the daily summaries of a poisoned user's page were lost for the day.

What: on a failure that is not an outage (:func:`~bgworkers.reminders.outages.is_outage`),
the page's transaction is rolled back and a fresh one records one per-item message per item
through the outbox (``fire_reminder``, ``send_user_daily_summary``: each with its own
retries, and ``fire_reminder``'s give-up that closes its reminder), and the page message
ends. Why at the first such failure rather than after the page's retries: the rollback left
nothing of the page written, so nothing is lost or done twice (each per-item message checks
its item's state first, and the email keys back that up), while a retry would fail the same
way and hold every item back by the retries' backoff (minutes). An outage says nothing about
the items: the page is retried, but only once: an item can look like an outage too (a
trigger raising a serialization failure for one row, a lock on one row that times out), and
such a page would be retried for minutes, dead-lettered and handed out again every few
minutes with the same row, holding the others back each time. So a page that fails again on
its retry is split whatever the cause. The split's own transaction is the health check: if
the database is really away, it fails and the page's error propagates (retried, as before),
and a page that runs once the database is back runs as a page. A time limit is not split: it
is raised asynchronously wherever the thread was, and the middleware raises it once per
message, so a split after it would run with no time limit at all, against the part that just
stopped answering. If recording the per-item messages fails, the page's own error is raised, and its
retry policy applies unchanged.

Only the page's transaction is covered, up to and including its commit. After the commit the
items are written; a failure while delivering their emails is retried as before, and that
retry finds every item written, so it writes and sends nothing again (the emails the failed
delivery did not send are the email sweep's, as after a crash).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
from sqlmodel import Session

from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.loggers import get_logger
from bgworkers.outbox import enqueue_many
from bgworkers.outbox.keys import per_run_key
from bgworkers.reminders.outages import is_outage

log = get_logger(__name__)


def write_page_or_split(
    session: Session,
    write: Callable[[], list[int]],
    *,
    per_item: dramatiq.Actor[..., Any],
    items: Sequence[tuple[Any, ...]],
    retry: bool = False,
) -> list[int]:
    """Run ``write`` (the page's writes) and commit; return the email ids it wrote.

    On a failure that is not an outage (any failure when the page is a ``retry``), record one
    ``per_item`` message per argument tuple of ``items`` in a fresh transaction, commit it
    and return no email ids (see the module docstring). The messages are keyed by the page
    message (``per_run_key``), so a page message delivered again after a split records none
    twice.
    """
    try:
        email_ids = write()
        session.commit()
    except Exception as exc:  # sorted below: an outage is retried once; others split
        if (is_outage(exc) and not retry) or not _split(
            session, exc, per_item=per_item, items=items
        ):
            raise
        return []
    return email_ids


def _split(
    session: Session,
    exc: Exception,
    *,
    per_item: dramatiq.Actor[..., Any],
    items: Sequence[tuple[Any, ...]],
) -> bool:
    """Hand every item on to ``per_item``; False (logged) if that fails too."""
    session.rollback()
    try:
        enqueue_many(session, per_item, items, dedupe_key=per_run_key)
        session.commit()
    except Exception as split_error:  # noqa: BLE001 - the page's own failure is what propagates
        session.rollback()
        log.error(
            "page_not_split",
            per_item=per_item.actor_name,
            items=len(items),
            error=failure_reason(split_error),
            cause=failure_reason(exc),
        )
        return False
    log.warning(
        "page_split", per_item=per_item.actor_name, items=len(items), error=failure_reason(exc)
    )
    return True
