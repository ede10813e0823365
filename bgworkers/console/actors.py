"""Actors of the console (queue ``maintenance``): the dead-letter index's upkeep.

Here, beside the index it prunes, rather than with the maintenance jobs: the index belongs to
the console, and the maintenance domain sits below it.
"""

from __future__ import annotations

from bgworkers import queues
from bgworkers.console.dead_letters import prune_dead_letters as prune
from bgworkers.db.engine import session_scope, utcnow
from bgworkers.tasks import task


@task(queue=queues.MAINTENANCE, periodic=True, max_retries=3, time_limit_ms=60_000)
def prune_dead_letters() -> None:
    """Hourly: drop dead-letter index rows whose message RabbitMQ expired from the XQ."""
    with session_scope() as session:
        prune(session, now=utcnow())
