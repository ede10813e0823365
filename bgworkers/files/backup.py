"""Per-user backups: write one archive of everything bgworkers holds for a user, keep the
newest few, and fan the weekly run out to one message per user.

What is archived is chosen by :mod:`bgworkers.files.ownership`; the archive format is
:mod:`bgworkers.files.archive`; reading an archive back (verify, restore) is
:mod:`bgworkers.files.restore`.

On PostgreSQL all tables are read in one ``REPEATABLE READ`` transaction, so the archive is
one consistent snapshot. On SQLite each read sees the latest committed data (the driver only
opens a transaction at the first write), so a write landing between two tables' reads may
show in one and not the other.

Credentials are left out: ``user_sessions`` is never archived and the columns a table lists
in ``info[SECRET_COLUMNS]`` (OAuth tokens) are written as null, so a restore brings such
connections back as ``reauth_required``: the user connects again.

Retention keeps the newest ``keep`` archives per user; temp files a crash left behind are
deleted once a day old.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers.db.engine import session_scope
from bgworkers.db.tables import every_table
from bgworkers.files.archive import (
    TEMP_PREFIX,
    USERS_TABLE,
    InvalidBackup,
    TableRows,
    archive_name,
    check_run_id,
    list_archives,
    private_dir,
    publish,
    user_dir,
    write_archive,
)
from bgworkers.files.metrics import BACKUP_METRICS
from bgworkers.files.ownership import owned_rows, secret_columns, user_email, user_tables
from bgworkers.files.restore import verify_archive
from bgworkers.logs.loggers import get_logger
from bgworkers.users.models import User

log = get_logger(__name__)

#: A temp file this old is a crash's leftover, not a write in progress.
STALE_TEMP_AGE = timedelta(days=1)


@dataclass(frozen=True)
class BackupResult:
    """Outcome of one user's backup; ``outcome`` is written, already_present or user_missing."""

    user_id: int
    run_id: str
    outcome: str
    path: Path | None
    rows: Mapping[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    pruned: tuple[Path, ...] = ()


def _user_rows(session: Session, user_id: int) -> Iterator[TableRows]:
    email = user_email(session, user_id)
    for table in user_tables():
        yield table, secret_columns(table), owned_rows(session, table, user_id, email)


def _write_user(
    out: io.BufferedWriter, *, session: Session, user_id: int, run_id: str, now: datetime
) -> dict[str, int]:
    return write_archive(
        out, user_id=user_id, run_id=run_id, now=now, tables=_user_rows(session, user_id)
    )


def backup_user(
    *,
    session: Session,
    user_id: int,
    run_id: str,
    backup_dir: Path,
    keep: int,
    now: datetime,
    before_publish: Callable[[Path], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> BackupResult:
    """Write the user's archive for ``run_id`` unless a valid one exists; then apply retention.

    Idempotent: a second delivery of the same run finds the archive, verifies it, and only
    prunes. ``before_publish`` is called with the fsync'ed temp file just before the rename
    (tests use it to stop a backup at its last moment). ``clock`` gives seconds.
    """
    check_run_id(run_id)
    started = clock()
    metrics = BACKUP_METRICS.get()
    directory = user_dir(backup_dir, user_id)
    final = directory / archive_name(user_id, run_id)
    if final.exists() and _is_valid(final):
        result = BackupResult(user_id, run_id, "already_present", final)
    elif _begin_snapshot(session).get(User, user_id) is None:
        metrics.backups.labels(outcome="user_missing").inc()
        log.info("backup_user_missing", user_id=user_id, run_id=run_id)
        return BackupResult(user_id, run_id, "user_missing", None)
    else:
        private_dir(backup_dir)
        private_dir(directory)
        write = partial(_write_user, session=session, user_id=user_id, run_id=run_id, now=now)
        rows, size = publish(directory, final, write, before_publish)
        metrics.archive_bytes.inc(size)
        result = BackupResult(user_id, run_id, "written", final, rows, size)
    pruned = prune_archives(backup_dir=backup_dir, user_id=user_id, keep=keep, now=now)
    duration = clock() - started
    metrics.backups.labels(outcome=result.outcome).inc()
    metrics.duration.observe(duration)
    log.info(
        "backup_user_finished",
        user_id=user_id,
        run_id=run_id,
        outcome=result.outcome,
        rows=dict(result.rows),
        size_bytes=result.size_bytes,
        pruned=len(pruned),
        duration_s=round(duration, 3),
    )
    return BackupResult(
        user_id, run_id, result.outcome, final, result.rows, result.size_bytes, pruned
    )


def _begin_snapshot(session: Session) -> Session:
    """Read every table in one snapshot: PostgreSQL needs REPEATABLE READ for that."""
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    return session


def _is_valid(path: Path) -> bool:
    try:
        verify_archive(path)
    except InvalidBackup as exc:
        log.warning("backup_archive_invalid_rewriting", path=str(path), error=str(exc))
        return False
    return True


def prune_archives(*, backup_dir: Path, user_id: int, keep: int, now: datetime) -> tuple[Path, ...]:
    """Delete all but the newest ``keep`` archives of the user, and stale temp files."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    archives = list_archives(backup_dir, user_id)
    doomed = archives[: max(len(archives) - keep, 0)]
    for path in doomed:
        with suppress(FileNotFoundError):
            path.unlink()
    directory = user_dir(backup_dir, user_id)
    cutoff = (now - STALE_TEMP_AGE).timestamp()
    with suppress(FileNotFoundError), os.scandir(directory) as entries:
        for entry in entries:
            if (
                entry.name.startswith(TEMP_PREFIX)
                and entry.is_file(follow_symlinks=False)
                and entry.stat(follow_symlinks=False).st_mtime < cutoff
            ):
                with suppress(FileNotFoundError):
                    os.unlink(entry.path)
    if doomed:
        BACKUP_METRICS.get().pruned.inc(len(doomed))
    return tuple(doomed)


def enqueue_user_backups(
    *,
    engine: Engine | None = None,
    run_id: str,
    enqueue: Callable[[Session, list[int], str], object],
    batch_size: int = 500,
) -> int:
    """One backup message per user, ``batch_size`` users per read and transaction.

    Users are read by increasing id (keyset paging), each page in its own short transaction;
    ``enqueue(session, ids, run_id)`` records the page's messages in it (the outbox), so
    they go out once it has committed. Returns the number of users.
    """
    check_run_id(run_id)
    users = every_table().tables[USERS_TABLE]
    total, last_id = 0, 0
    while True:
        with session_scope(engine) as session:
            statement = select(users.c.id).where(users.c.id > last_id).order_by(users.c.id)
            ids: list[int] = list(session.scalars(statement.limit(batch_size)))
            if ids:
                _send_batch(enqueue, session, ids, run_id)
        total += len(ids)
        if len(ids) < batch_size:
            break
        last_id = ids[-1]
    log.info("backup_fanout_enqueued", run_id=run_id, users=total)
    return total


def _send_batch(
    enqueue: Callable[[Session, list[int], str], object],
    session: Session,
    ids: list[int],
    run_id: str,
) -> None:
    enqueue(session, ids, run_id)  # in the page's transaction: the outbox
    BACKUP_METRICS.get().enqueued.inc(len(ids))
