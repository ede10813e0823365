"""Actors of the maintenance domain (queue ``maintenance``)."""

from __future__ import annotations

from datetime import datetime

from dramatiq.middleware import CurrentMessage

from bgworkers import queues
from bgworkers.db.engine import get_engine, session_scope, utcnow
from bgworkers.maintenance.heartbeat import record_heartbeat
from bgworkers.maintenance.optimize import optimize_engine
from bgworkers.maintenance.sessions import delete_expired_sessions
from bgworkers.settings import get_settings
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


# Long maintenance jobs: time limits stay below RabbitMQ's 30-minute consumer timeout. A failure
# is retried up to 3 times (each job is idempotent), then dead-lettered.


@task(queue=queues.MAINTENANCE, periodic=True, max_retries=3, time_limit_ms=25 * 60_000)
def optimize_database() -> None:
    """Weekly VACUUM/ANALYZE (PostgreSQL) or PRAGMA optimize and VACUUM if worthwhile (SQLite)."""
    settings = get_settings()
    optimize_engine(
        engine=get_engine(),
        min_free_ratio=settings.sqlite_vacuum_min_free_ratio,
        min_free_bytes=settings.sqlite_vacuum_min_free_bytes,
        statement_timeout_ms=20 * 60_000,
    )


@task(queue=queues.MAINTENANCE, periodic=True, max_retries=3, time_limit_ms=10 * 60_000)
def cleanup_old_sessions() -> None:
    """Daily: delete expired user sessions in bounded batches."""
    delete_expired_sessions(now=utcnow(), batch_size=get_settings().session_cleanup_batch_size)


@task(queue=queues.MAINTENANCE, periodic=True, max_retries=3, time_limit_ms=5 * 60_000)
def prune_rate_limit_rows() -> None:
    """Daily: delete shared rate-limit rows of credentials unused for
    ``BGW_RATE_LIMIT_ROW_IDLE_DAYS``."""
    from bgworkers.sync.api import prune_idle_rate_limit_rows

    idle_days = get_settings().rate_limit_row_idle_days
    prune_idle_rate_limit_rows(get_engine(), idle_s=idle_days * 86_400)
