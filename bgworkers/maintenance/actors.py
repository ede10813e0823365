"""Actors of the maintenance domain (queue ``maintenance``)."""

from __future__ import annotations

from datetime import datetime

from dramatiq.middleware import CurrentMessage

from bgworkers import queues
from bgworkers.db import session_scope, utcnow
from bgworkers.maintenance.heartbeat import record_heartbeat
from bgworkers.tasks import task


@task(queue=queues.MAINTENANCE, periodic=True, max_retries=0, time_limit_ms=30_000)
def heartbeat() -> None:
    """Stamp the scheduler's liveness; never retried: the next minute's beat supersedes it."""
    message = CurrentMessage.get_current_message()
    scheduled = message.options.get("scheduled_at") if message is not None else None
    with session_scope() as session:
        record_heartbeat(
            session=session,
            now=utcnow(),
            scheduled_at=datetime.fromisoformat(scheduled) if scheduled else None,
        )
