"""``bgworkers backup list|verify|restore``: per-user archives from an operator's shell.

Each command prints one line per result on stdout and, on failure, one line saying what
and why on stderr (never a traceback). Exit codes, for scripts::

    0  done: archives listed, archive valid, user restored
    1  the database failed (schema not migrated: run ``bgworkers migrate``, or another error)
    2  bad arguments, or an archive of another user than USER_ID
    3  the database does not answer (the code of every ``bgworkers`` command for a service
       that is not reachable)
    4  restore refused: the user still exists (delete it first; no merge over live data)
    5  no such archive, or it is unreadable or fails verification
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from bgworkers.db.engine import get_engine, session_scope
from bgworkers.files.archive import (
    RUN_ID,
    BackupError,
    InvalidBackup,
    archive_name,
    list_archives,
    user_dir,
)
from bgworkers.files.restore import (
    ArchiveOfAnotherUser,
    RestoreConflict,
    restore_archive,
    verify_archive,
)
from bgworkers.logs.loggers import redact_text
from bgworkers.processes.diagnosis import EXIT_UNAVAILABLE, database_problem
from bgworkers.settings import Settings

EXIT_OK = 0
EXIT_DATABASE = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 4
EXIT_INVALID = 5

#: The ARCHIVE argument of ``restore`` that names the user's newest archive.
LATEST = "latest"


class ArchiveNotFound(InvalidBackup):
    """ARCHIVE names no archive file."""


def resolve_archive(backup_dir: Path, user_id: int, archive: str) -> Path:
    """ARCHIVE as the operator gave it: ``latest``, a run id (``20261129T010000Z``) of the
    user's archives in ``backup_dir``, or a path."""
    if archive == LATEST:
        found = list_archives(backup_dir, user_id)
        if not found:
            raise ArchiveNotFound(f"user {user_id} has no archives in {backup_dir}")
        return found[-1]
    if RUN_ID.fullmatch(archive):
        return user_dir(backup_dir, user_id) / archive_name(user_id, archive)
    return Path(archive)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise ArchiveNotFound(f"no archive at {path}")
    return path


def _row_summary(rows: dict[str, int]) -> str:
    count, tables = sum(rows.values()), len(rows)
    return f"{count} row{'' if count == 1 else 's'} in {tables} table{'' if tables == 1 else 's'}"


def list_command(*, backup_dir: Path, user_id: int, out: TextIO) -> int:
    """Print the user's archives, oldest first, one path a line."""
    found = list_archives(backup_dir, user_id)
    if not found:
        raise ArchiveNotFound(f"user {user_id} has no archives in {backup_dir}")
    for path in found:
        print(path, file=out)
    return EXIT_OK


def verify_command(*, archive: Path, out: TextIO) -> int:
    """Check an archive's members, checksums and row counts; print what it holds."""
    manifest = verify_archive(_existing(archive))
    rows = {name: int(entry["rows"]) for name, entry in manifest["tables"].items()}
    print(
        f"{archive.name}: valid, user {manifest['user_id']}, run {manifest['run_id']}, "
        f"{_row_summary(rows)}",
        file=out,
    )
    return EXIT_OK


def restore_command(*, engine: Engine, user_id: int, archive: Path, out: TextIO) -> int:
    """Put a deleted user's archive back, in one transaction: all of it or nothing."""
    with session_scope(engine) as session:
        rows = restore_archive(_existing(archive), session=session, expected_user_id=user_id)
    print(f"restored user {user_id} from {archive.name}: {_row_summary(rows)}", file=out)
    return EXIT_OK


_EXIT_CODES: tuple[tuple[type[Exception], int], ...] = (
    (ArchiveOfAnotherUser, EXIT_USAGE),
    (RestoreConflict, EXIT_CONFLICT),
    (InvalidBackup, EXIT_INVALID),
    (BackupError, EXIT_INVALID),
)


def run_command(
    name: str, command: Callable[[], int], *, err: TextIO, database_url: str = ""
) -> int:
    """Run one ``bgworkers backup`` command; turn its expected failures into an exit code
    and one line on ``err``."""
    try:
        return command()
    except BackupError as exc:
        print(f"bgworkers backup {name}: {exc}", file=err)
        return next(code for kind, code in _EXIT_CODES if isinstance(exc, kind))
    except SQLAlchemyError as exc:
        problem = database_problem(exc, database_url)
        if problem is not None and problem.exit_code == EXIT_UNAVAILABLE:
            print(f"bgworkers backup {name}: {problem.message}", file=err)
            return EXIT_UNAVAILABLE
        # The driver's message comes first; SQLAlchemy appends the SQL and a link below it.
        detail = redact_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        print(f"bgworkers backup {name}: database error: {detail}", file=err)
        return EXIT_DATABASE


def backup_command(
    settings: Settings,
    name: str,
    *,
    user_id: int | None,
    archive: str | None,
    out: TextIO,
    err: TextIO,
) -> int:
    """``bgworkers backup <name>`` with its parsed arguments; returns the exit code."""

    def chosen() -> int:
        if name == "list":
            assert user_id is not None
            return list_command(backup_dir=settings.backup_dir, user_id=user_id, out=out)
        assert archive is not None
        if name == "verify":
            return verify_command(archive=Path(archive), out=out)
        assert user_id is not None
        return restore_command(
            engine=get_engine(settings),
            user_id=user_id,
            archive=resolve_archive(settings.backup_dir, user_id, archive),
            out=out,
        )

    return run_command(name, chosen, err=err, database_url=settings.database_url.get_secret_value())
