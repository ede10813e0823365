"""Actors of the files domain (queue ``files``).

Time limits stay below RabbitMQ's 30-minute consumer timeout, past which the broker closes
the channel of a worker still holding the message. A periodic actor that fails is
retried up to 3 times (its retries keep their tick), then dead-lettered; it is idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dramatiq.middleware import CurrentMessage
from sqlmodel import Session

from bgworkers import queues
from bgworkers.db.engine import session_scope, utcnow
from bgworkers.files.archive import run_id_for
from bgworkers.files.backup import backup_user, enqueue_user_backups
from bgworkers.files.cleanup import TempDirUnavailable, clean_temp_dir
from bgworkers.outbox import enqueue_many
from bgworkers.settings import get_settings
from bgworkers.tasks import task
from bgworkers.users.slots import defer, user_slot


@task(
    queue=queues.FILES,
    periodic=True,
    max_retries=3,
    time_limit_ms=20 * 60_000,
    permanent_errors=(TempDirUnavailable,),
)
def cleanup_temp_files(dry_run: bool | None = None) -> None:
    """Delete old temp files; ``dry_run`` (default: the setting) only reports them."""
    settings = get_settings()
    clean_temp_dir(
        root=settings.temp_dir,
        max_age=timedelta(hours=settings.temp_max_age_hours),
        now=utcnow(),
        dry_run=settings.temp_cleanup_dry_run if dry_run is None else dry_run,
    )


@task(queue=queues.FILES, periodic=True, max_retries=3, time_limit_ms=10 * 60_000)
def backup_user_data() -> None:
    """Weekly fan-out: one ``backup_one_user`` message per user, written with each page.

    The run id comes from this message's enqueue time, so a redelivery of the same message
    sends the same run id and the per-user actor finds its archive already written.
    """
    message = CurrentMessage.get_current_message()
    started = (
        datetime.fromtimestamp(message.message_timestamp / 1000, tz=UTC) if message else utcnow()
    )
    enqueue_user_backups(
        run_id=run_id_for(started),
        enqueue=record_backup_messages,
        batch_size=get_settings().backup_fanout_batch_size,
    )


def record_backup_messages(session: Session, user_ids: list[int], run_id: str) -> None:
    """One ``backup_one_user`` message per user in the outbox, once per (run, user)."""
    enqueue_many(
        session,
        backup_one_user,
        ((user_id, run_id) for user_id in user_ids),
        dedupe_key=lambda args: f"backup_one_user:{args[1]}:{args[0]}",
    )


@task(queue=queues.FILES, max_retries=3, min_backoff_ms=30_000, time_limit_ms=15 * 60_000)
def backup_one_user(user_id: int, run_id: str) -> None:
    """Write one user's archive for the run; idempotent (an existing valid archive is kept).

    Takes one of the user's job slots (``BGW_MAX_CONCURRENT_JOBS_PER_USER``) or is deferred.
    """
    settings = get_settings()
    with user_slot(user_id, cap=settings.max_concurrent_jobs_per_user) as taken:
        if not taken:
            defer(backup_one_user, user_id, run_id)
            return
        with session_scope() as session:
            backup_user(
                session=session,
                user_id=user_id,
                run_id=run_id,
                backup_dir=settings.backup_dir,
                keep=settings.backup_keep,
                now=utcnow(),
            )
