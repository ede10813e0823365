"""Delete expired user sessions in small batches.

Why batches: one ``DELETE ... WHERE expires_at <= now`` over months of sessions would hold
its locks (and, on SQLite, the single writer lock) for as long as it runs and build one huge
transaction. Each batch selects at most ``batch_size`` expired ids and deletes them in its
own short transaction; on PostgreSQL rows locked by another run are skipped
(``FOR UPDATE SKIP LOCKED``), so two overlapping runs do not wait on each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from bgworkers.db import session_scope
from bgworkers.logs import get_logger
from bgworkers.maintenance.metrics import MAINTENANCE_METRICS
from bgworkers.users.models import UserSession

log = get_logger(__name__)


@dataclass(frozen=True)
class SessionCleanupReport:
    deleted: int
    batches: int


def delete_expired_sessions(
    *, now: datetime, batch_size: int = 1_000, engine: Engine | None = None
) -> SessionCleanupReport:
    """Delete sessions with ``expires_at <= now``, ``batch_size`` per transaction.

    Idempotent: a second run finds nothing. Stops at the first batch smaller than
    ``batch_size``. ``engine`` defaults to the process's engine.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    metrics = MAINTENANCE_METRICS.get()
    deleted = batches = 0
    while True:
        with session_scope(engine) as session:
            ids = list(
                session.scalars(
                    select(col(UserSession.id))
                    .where(col(UserSession.expires_at) <= now)
                    .order_by(col(UserSession.expires_at))
                    .limit(batch_size)
                    .with_for_update(skip_locked=True)
                )
            )
            if ids:
                session.execute(delete(UserSession).where(col(UserSession.id).in_(ids)))
        if ids:
            batches += 1
            deleted += len(ids)
            metrics.session_batches.inc()
            metrics.sessions_deleted.inc(len(ids))
        if len(ids) < batch_size:
            break
    log.info("expired_sessions_deleted", deleted=deleted, batches=batches)
    return SessionCleanupReport(deleted=deleted, batches=batches)
