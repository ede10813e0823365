"""periodiq 0.14.0 beyond its public API (pinned exactly in pyproject.toml).

periodiq's CLI makes its ``Scheduler`` itself and offers no hook around a send; the one way
to keep the scheduler alive through a RabbitMQ outage is to replace ``Scheduler.send_actors``.
Why is in :data:`USES` and :mod:`bgworkers.scheduling.resilient_sending`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bgworkers.compat import PrivateUse


def replace_send_actors(send_actors: Callable[[Any, list[Any], Any], None]) -> None:
    """Make periodiq's scheduler call ``send_actors(scheduler, actors, now)`` at each tick."""
    import periodiq

    periodiq.Scheduler.send_actors = send_actors


USES: tuple[PrivateUse, ...] = (
    PrivateUse(
        "periodiq:Scheduler.send_actors",
        used_by="bgworkers.compat.periodiq.replace_send_actors "
        "(bgworkers.scheduling.resilient_sending)",
        why="replaced: sends retried with backoff while RabbitMQ is away (periodiq exits on "
        "the first failed publish) and counted for the scheduler's metrics",
        recheck="diff periodiq's send_actors with ours (logging, scheduled_at) and that "
        "Scheduler.schedule still calls it with (actors, now)",
        signature="(self, actors, now)",
        source_sha256="1daf0dbd4003b297",
    ),
    PrivateUse(
        "periodiq:Scheduler.schedule",
        used_by="bgworkers.scheduling.resilient_sending (next wake-up metric)",
        why="our send_actors reads self.actors and each actor's periodic option, as schedule does",
        recheck="that the scheduler still keeps its actors in self.actors and asks "
        "next_valid_date(now) of each",
        source_sha256="5a25012a01169bdc",
    ),
)
