"""Every known label set of every counter, exported at 0 from a process's start.

Why: ``increase()`` and ``rate()`` need two samples of a series, so a counter that first
appears at its first event reads 0 and an alert on it never fires (docs/metrics.md). Gauges
holding timestamps or sizes are left alone: 0 would be a false reading.

Called once per process, never per message: in each worker process at boot
(:class:`bgworkers.middleware.metrics.MessageMetrics`) and in the scheduler
(:func:`bgworkers.scheduling.resilient_sending.install`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bgworkers import queues


def actor_labels(actors: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(queue, actor)`` of every declared actor on one of bgworkers' queues."""
    from dramatiq.common import q_name

    pairs = [(q_name(actor.queue_name), name) for name, actor in sorted(actors.items())]
    return [(queue, name) for queue, name in pairs if queue in queues.ALL]


def periodic_jobs() -> list[str]:
    from bgworkers.scheduling.schedule import SCHEDULE

    return [job.actor_name for job in SCHEDULE]


def initialise_worker_series(actors: Mapping[str, Any], *, database_backend: str) -> None:
    """Build every metric set a worker process records to, with every known label set at 0."""
    from bgworkers.brokers.envelope import InvalidEnvelope
    from bgworkers.email.metrics import EMAIL_METRICS
    from bgworkers.files.metrics import BACKUP_METRICS, CLEANUP_METRICS
    from bgworkers.maintenance.heartbeat import HEARTBEAT_METRICS
    from bgworkers.maintenance.metrics import MAINTENANCE_METRICS
    from bgworkers.metrics.messages import MESSAGE_METRICS
    from bgworkers.outbox.metrics import OUTBOX_METRICS
    from bgworkers.reminders.metrics import REMINDER_METRICS
    from bgworkers.scheduling.metrics import SCHEDULE_METRICS
    from bgworkers.sync.metrics import SYNC_METRICS

    MESSAGE_METRICS.get().zero(actor_labels(actors), InvalidEnvelope.CODES)
    SCHEDULE_METRICS.get().zero(periodic_jobs())
    MAINTENANCE_METRICS.get().zero(database_backend)
    HEARTBEAT_METRICS.get()  # unlabelled: built is enough
    EMAIL_METRICS.get().zero()
    REMINDER_METRICS.get().zero()
    OUTBOX_METRICS.get().zero()
    CLEANUP_METRICS.get().zero()
    BACKUP_METRICS.get().zero()
    SYNC_METRICS.get().zero()


def initialise_from_settings(actors: Mapping[str, Any]) -> None:
    """:func:`initialise_worker_series` for this process's database (its SQL dialect's name,
    ``sqlite`` or ``postgresql``, as the optimiser labels it): what
    :class:`~bgworkers.middleware.metrics.MessageMetrics` calls at worker boot."""
    from sqlalchemy.engine import make_url

    from bgworkers.settings import get_settings

    url = make_url(get_settings().database_url.get_secret_value())
    initialise_worker_series(actors, database_backend=url.get_backend_name())
