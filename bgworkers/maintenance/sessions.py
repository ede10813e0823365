"""Delete expired user sessions in small batches.

Why batches: one ``DELETE ... WHERE expires_at <= now`` over months of sessions would hold
its locks (and, on SQLite, the single writer lock) for as long as it runs and build one huge
transaction. Each batch is one ``DELETE`` in its own short transaction whose ``WHERE``
repeats ``expires_at <= now`` and picks at most ``batch_size`` ids by subquery: the ids are
never sent as parameters (no limit on the batch size from the driver), and a session
extended by the application at the same moment is not deleted. On PostgreSQL the subquery
skips rows locked by another run (``FOR UPDATE SKIP LOCKED``), so two overlapping runs do
not wait on each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from bgworkers.db.engine import session_scope
from bgworkers.logs.loggers import get_logger
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
            expired = col(UserSession.expires_at) <= now
            batch = (
                select(col(UserSession.id))
                .where(expired)
                .order_by(col(UserSession.expires_at))
                .limit(batch_size)
            )
            if session.get_bind().dialect.name == "postgresql":
                batch = batch.with_for_update(skip_locked=True)
            outcome = session.execute(
                delete(UserSession).where(expired, col(UserSession.id).in_(batch.scalar_subquery()))
            )
            count = int(getattr(outcome, "rowcount", 0) or 0)
        if count:
            batches += 1
            deleted += count
            metrics.session_batches.inc()
            metrics.sessions_deleted.inc(count)
        if count < batch_size:
            break
    log.info("expired_sessions_deleted", deleted=deleted, batches=batches)
    return SessionCleanupReport(deleted=deleted, batches=batches)
