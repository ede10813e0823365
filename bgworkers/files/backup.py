"""Per-user backups: one archive of everything bgworkers holds for a user, and reading it back.

What is backed up is discovered, not listed: the user's row of ``users`` plus every row of
every table in ``SQLModel.metadata`` that has a ``user_id`` column, so a domain that adds a
table is covered without touching this module. A table without ``user_id`` whose rows belong
to a user through an email address is declared (:data:`EMAIL_OWNED_TABLES`, or the table's
``info["backup_owner_email_column"]``): its rows whose column equals ``users.email``, case
aside, are the user's (the email outbox is kept by ``recipient``). On PostgreSQL all tables are
read in one ``REPEATABLE READ`` transaction, so the archive is one consistent snapshot. On
SQLite each read sees the latest committed data (the driver only opens a transaction at the
first write), so a write landing between two tables' reads may show in one and not the other.

Credentials are left out: ``user_sessions`` is never archived (login session ids are live
credentials and useless after a restore), and the columns a table lists in
``info["secret_columns"]`` (OAuth tokens) are written as null. A restore therefore brings
such connections back with status ``reauth_required``: the user connects again.

Archive ``<backup_dir>/user-<id>/user-<id>-<run_id>.tar.gz`` (``run_id`` is a UTC stamp
``YYYYMMDDTHHMMSSZ``), a gzip'd tar holding:

- ``tables/<table>.jsonl``: one JSON object per row (datetimes ISO 8601, bytes base64,
  decimals and UUIDs as strings), in primary-key order; a file for every table, even empty;
- ``manifest.json``, written last: format, user id, run id, creation time and, per table,
  the file, row count, column names and the SHA-256 of the file.

Why it cannot look complete when it is not: the archive is written to a dot-prefixed temp
file in the same directory, flushed and fsync'ed, renamed to its final name (atomic within a
filesystem) and the directory is fsync'ed; only names of the final form count as archives.
Files are created 0600 and directories 0700 (owner only): the rows are personal data.

Retention keeps the newest ``keep`` archives per user; temp files a crash left behind are
deleted once a day old.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Column, ColumnElement, MetaData, Table, TypeDecorator, func, select, text
from sqlalchemy.engine import Engine, RowMapping
from sqlmodel import Session, SQLModel

import bgworkers.models  # noqa: F401 - registers every domain's tables on SQLModel.metadata
from bgworkers.db import after_commit, session_scope
from bgworkers.errors import PermanentError
from bgworkers.files.metrics import BACKUP_METRICS
from bgworkers.logs import get_logger
from bgworkers.sync.models import SECRET_COLUMNS_INFO_KEY, STATUS_REAUTH_REQUIRED
from bgworkers.users.models import User

log = get_logger(__name__)

FORMAT = "bgworkers-user-backup/1"
USERS_TABLE = "users"
MANIFEST = "manifest.json"
# Strict ASCII (``re.ASCII``: no full-width digits) and ``fullmatch`` (``$`` would accept a
# trailing newline): run ids become file names, and one retention does not see is never pruned.
RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z", re.ASCII)
ARCHIVE_NAME = re.compile(
    r"user-(?P<user_id>[0-9]+)-(?P<run_id>[0-9]{8}T[0-9]{6}Z)\.tar\.gz", re.ASCII
)
TEMP_PREFIX = ".partial-"
#: A temp file this old is a crash's leftover, not a write in progress.
STALE_TEMP_AGE = timedelta(days=1)
_READ_BATCH = 1000
#: Tables without ``user_id`` owned through an email address: table -> column compared,
#: case-insensitively, with ``users.email``. A table may instead say so in its own ``info``.
EMAIL_OWNED_TABLES: Mapping[str, str] = {"email_outbox": "recipient"}
OWNER_EMAIL_INFO_KEY = "backup_owner_email_column"
#: Never archived: login session ids are live credentials, and worthless in a restore.
EXCLUDED_TABLES: frozenset[str] = frozenset({"user_sessions"})
_SPOOL_BYTES = 8 * 1024 * 1024


class BackupError(PermanentError):
    """A backup cannot be made or read as asked; retrying will not change that."""


class InvalidBackup(BackupError):
    """An archive fails verification: missing member, bad checksum, or rows that do not fit."""


class RestoreConflict(BackupError):
    """The user still exists in the database; restoring over live data is refused."""


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


@dataclass(frozen=True)
class BackupContents:
    """A verified archive: its manifest and every table's rows, decoded to Python values."""

    manifest: Mapping[str, Any]
    rows: Mapping[str, list[dict[str, Any]]]


# --- what to back up ---------------------------------------------------------------------


def owner_email_column(table: Table) -> str | None:
    """The column holding the owner's email, for a table declared as owned that way."""
    if "user_id" in table.columns:
        return None
    name = table.info.get(OWNER_EMAIL_INFO_KEY) or EMAIL_OWNED_TABLES.get(table.name)
    if name is not None and name not in table.columns:
        raise BackupError(f"table {table.name} declares owner column {name!r} it does not have")
    return str(name) if name is not None else None


def secret_columns(table: Table) -> frozenset[str]:
    """Columns written as null in archives (the table's ``info["secret_columns"]``)."""
    return frozenset(table.info.get(SECRET_COLUMNS_INFO_KEY, ()))


def user_tables(metadata: MetaData | None = None) -> list[Table]:
    """``users`` first, then, in dependency order, every table with a ``user_id`` column or
    declared as owned by email, except :data:`EXCLUDED_TABLES`."""
    metadata = metadata or SQLModel.metadata
    users = metadata.tables[USERS_TABLE]
    return [users] + [
        table
        for table in metadata.sorted_tables
        if table is not users
        and table.name not in EXCLUDED_TABLES
        and ("user_id" in table.columns or owner_email_column(table) is not None)
    ]


def owner_clause(table: Table, user_id: int, email: str) -> ColumnElement[bool]:
    """The WHERE clause selecting the rows of ``table`` that belong to the user."""
    if table.name == USERS_TABLE:
        return table.c.id == user_id
    email_column = owner_email_column(table)
    if email_column is not None:
        return func.lower(table.c[email_column]) == func.lower(email)
    return table.c.user_id == user_id


def run_id_for(moment: datetime) -> str:
    """The run id of a backup started at ``moment`` (aware): ``YYYYMMDDTHHMMSSZ`` in UTC."""
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def archive_name(user_id: int, run_id: str) -> str:
    return f"user-{user_id}-{run_id}.tar.gz"


def user_dir(backup_dir: Path, user_id: int) -> Path:
    return backup_dir / f"user-{user_id}"


def list_archives(backup_dir: Path, user_id: int) -> list[Path]:
    """The user's complete archives, oldest first (temp files never count)."""
    directory = user_dir(backup_dir, user_id)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        match = ARCHIVE_NAME.fullmatch(name)
        if match and int(match["user_id"]) == user_id:
            found.append((match["run_id"], directory / name))
    return [path for _, path in sorted(found)]


# --- value encoding ----------------------------------------------------------------------


def _python_type(column: Column[Any]) -> type | None:
    """The Python type of a column's values; a TypeDecorator that does not say defers to its
    underlying type (``Interval`` says timedelta although it stores a datetime on SQLite)."""
    type_: Any = column.type
    while True:
        try:
            python_type: type = type_.python_type
        except NotImplementedError:
            python_type = object
        if python_type is not object or not isinstance(type_, TypeDecorator):
            return None if python_type is object else python_type
        type_ = type_.impl_instance


def encode_value(value: Any) -> Any:
    """A JSON-ready form of a column value (decoded back by :func:`decode_value`)."""
    if value is None or isinstance(value, bool | int | float | str | dict | list):
        return value
    if isinstance(value, datetime | date | dt_time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    raise BackupError(f"cannot archive a value of type {type(value).__name__}")


def decode_value(column: Column[Any], value: Any) -> Any:
    """Turn an archived value back into what the column holds."""
    python_type = _python_type(column)
    if value is None or python_type is None:
        return value
    if python_type is datetime:
        return datetime.fromisoformat(value)
    if python_type is date:
        return date.fromisoformat(value)
    if python_type is dt_time:
        return dt_time.fromisoformat(value)
    if python_type is bytes:
        return base64.b64decode(value)
    if python_type is timedelta:
        return timedelta(seconds=value)
    if python_type in (Decimal, uuid.UUID):
        return python_type(value)
    if isinstance(python_type, type) and issubclass(python_type, enum.Enum):
        return python_type[value]
    return value


def _row_line(row: RowMapping, secret: frozenset[str] = frozenset()) -> bytes:
    encoded = {name: None if name in secret else encode_value(value) for name, value in row.items()}
    line = json.dumps(encoded, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return line.encode("utf-8") + b"\n"


# --- writing -----------------------------------------------------------------------------


def _private_dir(path: Path) -> Path:
    """Create ``path`` if needed (fsync'ing its parent so the entry survives a crash), 0700."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        _fsync_dir(path.parent)
    os.chmod(path, 0o700)
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _owner_filter(member: tarfile.TarInfo, mtime: float) -> tarfile.TarInfo:
    member.mode = 0o600
    member.mtime = int(mtime)
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member


def _add_bytes(tar: tarfile.TarFile, name: str, data: Any, size: int, mtime: float) -> None:
    info = _owner_filter(tarfile.TarInfo(name), mtime)
    info.size = size
    tar.addfile(info, data)


def _table_rows(session: Session, table: Table, user_id: int, email: str) -> Iterator[RowMapping]:
    statement = (
        select(table)
        .where(owner_clause(table, user_id, email))
        .order_by(*table.primary_key.columns)
        .execution_options(yield_per=_READ_BATCH)
    )
    yield from session.execute(statement).mappings()


def _write_archive(
    out: io.BufferedWriter, *, session: Session, user_id: int, run_id: str, now: datetime
) -> dict[str, int]:
    mtime = now.timestamp()
    tables: dict[str, Any] = {}
    users = SQLModel.metadata.tables[USERS_TABLE]
    email = session.execute(select(users.c.email).where(users.c.id == user_id)).scalar_one()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) as tar:
        for table in user_tables():
            digest, count = hashlib.sha256(), 0
            secret = secret_columns(table)
            with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
                for row in _table_rows(session, table, user_id, email):
                    line = _row_line(row, secret)
                    digest.update(line)
                    spool.write(line)
                    count += 1
                size = spool.tell()
                spool.seek(0)
                member = f"tables/{table.name}.jsonl"
                _add_bytes(tar, member, spool, size, mtime)
            tables[table.name] = {
                "file": member,
                "rows": count,
                "columns": [column.name for column in table.columns],
                "secret_columns_omitted": sorted(secret),
                "sha256": digest.hexdigest(),
            }
        manifest = {
            "format": FORMAT,
            "user_id": user_id,
            "run_id": run_id,
            "created_at": now.isoformat(),
            "tables": tables,
        }
        data = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
        _add_bytes(tar, MANIFEST, io.BytesIO(data), len(data), mtime)
    return {name: entry["rows"] for name, entry in tables.items()}


def _publish(
    directory: Path,
    final: Path,
    write: Callable[[io.BufferedWriter], dict[str, int]],
    before_publish: Callable[[Path], None] | None,
) -> tuple[dict[str, int], int]:
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=directory)
    temp = Path(temp_name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            rows = write(out)
            out.flush()
            os.fsync(out.fileno())
            size = os.fstat(out.fileno()).st_size
        if before_publish is not None:
            before_publish(temp)
        os.replace(temp, final)
    # BaseException: even a time limit or shutdown must not leave the temp file behind.
    except BaseException:
        with suppress(FileNotFoundError):
            temp.unlink()
        raise
    _fsync_dir(directory)
    return rows, size


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
    if not RUN_ID.fullmatch(run_id):
        raise BackupError(f"run id {run_id[:40]!r} is not of the form YYYYMMDDTHHMMSSZ")
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
        _private_dir(backup_dir)
        _private_dir(directory)
        write = partial(_write_archive, session=session, user_id=user_id, run_id=run_id, now=now)
        rows, size = _publish(directory, final, write, before_publish)
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


# --- fan-out -----------------------------------------------------------------------------


def enqueue_user_backups(
    *,
    engine: Engine | None = None,
    run_id: str,
    enqueue: Callable[[int, str], object],
    batch_size: int = 500,
) -> int:
    """Send one backup message per user, ``batch_size`` users per read, after each commit.

    Users are read by increasing id (keyset paging), each page in its own short transaction;
    a page's messages go out only once it has committed. Returns the number of users.
    """
    if not RUN_ID.fullmatch(run_id):
        raise BackupError(f"run id {run_id[:40]!r} is not of the form YYYYMMDDTHHMMSSZ")
    users = SQLModel.metadata.tables[USERS_TABLE]
    total, last_id = 0, 0
    while True:
        with session_scope(engine) as session:
            statement = select(users.c.id).where(users.c.id > last_id).order_by(users.c.id)
            ids: list[int] = list(session.scalars(statement.limit(batch_size)))
            if ids:
                after_commit(session, partial(_send_batch, enqueue, ids, run_id))
        total += len(ids)
        if len(ids) < batch_size:
            break
        last_id = ids[-1]
    log.info("backup_fanout_enqueued", run_id=run_id, users=total)
    return total


def _send_batch(enqueue: Callable[[int, str], object], ids: list[int], run_id: str) -> None:
    for user_id in ids:
        enqueue(user_id, run_id)
    BACKUP_METRICS.get().enqueued.inc(len(ids))


# --- reading back ------------------------------------------------------------------------


def _open_archive(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:gz")
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise InvalidBackup(f"{path.name}: not a readable archive: {exc}") from None


def _member_bytes(tar: tarfile.TarFile, name: str, path: Path) -> bytes:
    try:
        member = tar.getmember(name)
    except KeyError:
        raise InvalidBackup(f"{path.name}: {name} is missing") from None
    if not member.isfile():
        raise InvalidBackup(f"{path.name}: {name} is not a regular file")
    handle = tar.extractfile(member)
    if handle is None:
        raise InvalidBackup(f"{path.name}: {name} cannot be read")
    with handle:
        return handle.read()


def _load_manifest(tar: tarfile.TarFile, path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(_member_bytes(tar, MANIFEST, path))
    except ValueError as exc:
        raise InvalidBackup(f"{path.name}: manifest is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidBackup(f"{path.name}: not a {FORMAT} archive")
    match = ARCHIVE_NAME.fullmatch(path.name)
    if match and (
        int(match["user_id"]) != manifest.get("user_id")
        or match["run_id"] != manifest.get("run_id")
    ):
        raise InvalidBackup(f"{path.name}: manifest is for another user or run")
    if not isinstance(manifest.get("tables"), dict) or USERS_TABLE not in manifest["tables"]:
        raise InvalidBackup(f"{path.name}: manifest lists no users table")
    expected = {MANIFEST} | {entry["file"] for entry in manifest["tables"].values()}
    extra = set(tar.getnames()) - expected
    if extra:
        raise InvalidBackup(f"{path.name}: unexpected members {sorted(extra)}")
    return manifest


def _checked_lines(
    tar: tarfile.TarFile, path: Path, table_name: str, entry: Mapping[str, Any]
) -> list[dict[str, Any]]:
    data = _member_bytes(tar, entry["file"], path)
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise InvalidBackup(f"{path.name}: checksum mismatch for {table_name}")
    try:
        rows = [json.loads(line) for line in data.splitlines()]
    except ValueError as exc:
        raise InvalidBackup(f"{path.name}: {table_name} holds a bad line: {exc}") from None
    if len(rows) != entry["rows"]:
        raise InvalidBackup(
            f"{path.name}: {table_name} has {len(rows)} rows, manifest says {entry['rows']}"
        )
    return rows


def _checked_member(tar: tarfile.TarFile, path: Path, name: str, entry: Mapping[str, Any]) -> None:
    """Stream one table file through SHA-256 and count its lines, without holding it."""
    handle = tar.extractfile(entry["file"])
    if handle is None:
        raise InvalidBackup(f"{path.name}: {entry['file']} is not a regular file")
    digest, lines = hashlib.sha256(), 0
    with handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            lines += chunk.count(b"\n")
    if digest.hexdigest() != entry["sha256"]:
        raise InvalidBackup(f"{path.name}: checksum mismatch for {name}")
    if lines != entry["rows"]:
        raise InvalidBackup(f"{path.name}: {name} has {lines} rows, manifest says {entry['rows']}")


def verify_archive(path: Path) -> dict[str, Any]:
    """Check an archive's manifest, members, checksums and row counts; return the manifest.

    Streams each member, so memory stays small whatever the archive's size. Raises
    :class:`InvalidBackup` naming the first problem.
    """
    with _open_archive(path) as tar:
        try:
            manifest = _load_manifest(tar, path)
            for table_name, entry in manifest["tables"].items():
                _checked_member(tar, path, table_name, entry)
        except (OSError, tarfile.TarError, EOFError, KeyError, TypeError) as exc:
            raise InvalidBackup(f"{path.name}: damaged archive: {exc!r}") from None
    return manifest


def read_archive(path: Path, *, metadata: MetaData | None = None) -> BackupContents:
    """Verify an archive and decode its rows with the column types of ``metadata``.

    Every row must belong to the archive's user and have exactly the manifest's columns;
    a table or column the schema no longer has is an :class:`InvalidBackup`.
    """
    metadata = metadata or SQLModel.metadata
    with _open_archive(path) as tar:
        try:
            manifest = _load_manifest(tar, path)
            raw = {
                name: _checked_lines(tar, path, name, entry)
                for name, entry in manifest["tables"].items()
            }
        except (OSError, tarfile.TarError, EOFError, KeyError, TypeError) as exc:
            raise InvalidBackup(f"{path.name}: damaged archive: {exc!r}") from None
    user_id = manifest["user_id"]
    users_rows = raw.get(USERS_TABLE) or [{}]
    email = str(users_rows[0].get("email") or "").lower()
    decoded: dict[str, list[dict[str, Any]]] = {}
    for name, rows in raw.items():
        if name not in metadata.tables:
            raise InvalidBackup(f"{path.name}: table {name} no longer exists")
        table = metadata.tables[name]
        columns = manifest["tables"][name]["columns"]
        unknown = set(columns) - set(table.columns.keys())
        if unknown:
            raise InvalidBackup(f"{path.name}: {name} columns {sorted(unknown)} no longer exist")
        for row in rows:
            if set(row) != set(columns) or not _owned(table, row, user_id, email):
                raise InvalidBackup(f"{path.name}: a row of {name} does not fit the manifest")
        decoded[name] = [
            {key: decode_value(table.c[key], value) for key, value in row.items()} for row in rows
        ]
    return BackupContents(manifest=manifest, rows=decoded)


def _owned(table: Table, row: Mapping[str, Any], user_id: int, email: str) -> bool:
    if table.name == USERS_TABLE:
        return bool(row.get("id") == user_id)
    email_column = owner_email_column(table)
    if email_column is not None:
        return str(row.get(email_column) or "").lower() == email
    return bool(row.get("user_id") == user_id)


def _restorable(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """A row as it goes back in: omitted secrets become empty, the connection needs reauth."""
    secret = secret_columns(table)
    if not secret:
        return row
    for name in secret:
        if row.get(name) is None and not table.c[name].nullable:
            row[name] = ""
    if "status" in table.columns:
        row["status"] = STATUS_REAUTH_REQUIRED
    return row


def _not_present(
    session: Session, table: Table, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Rows of an email-owned table that are not in the database already: they outlive the
    user's row (no foreign key), so a restore after a deletion finds them still there."""
    if owner_email_column(table) is None or len(table.primary_key.columns) != 1:
        return rows
    key = next(iter(table.primary_key.columns))
    wanted = [row[key.name] for row in rows]
    present: set[Any] = set()
    for start in range(0, len(wanted), _READ_BATCH):
        chunk = wanted[start : start + _READ_BATCH]
        present.update(session.scalars(select(key).where(key.in_(chunk))))
    return [row for row in rows if row[key.name] not in present]


def restore_archive(
    path: Path, *, session: Session, metadata: MetaData | None = None
) -> dict[str, int]:
    """Insert a verified archive's rows into the database; returns rows restored per table.

    For a user who is gone (deleted by mistake, or a fresh database): refuses with
    :class:`RestoreConflict` if the user's row still exists. Tables are filled in dependency
    order; on PostgreSQL, id sequences are moved past the restored ids. Rows of email-owned
    tables still present are left as they are (and not counted). Secret columns come back
    empty and their tables' ``status`` as ``reauth_required``: archives hold no credentials.
    """
    metadata = metadata or SQLModel.metadata
    contents = read_archive(path, metadata=metadata)
    users = metadata.tables[USERS_TABLE]
    user_id = contents.manifest["user_id"]
    if session.execute(select(users.c.id).where(users.c.id == user_id)).first() is not None:
        raise RestoreConflict(f"user {user_id} exists; delete it before restoring {path.name}")
    restored: dict[str, int] = {}
    for table in metadata.sorted_tables:
        rows = contents.rows.get(table.name)
        if rows:
            rows = _not_present(session, table, [_restorable(table, row) for row in rows])
        if rows:
            session.execute(table.insert(), rows)
        if rows is not None:
            restored[table.name] = len(rows)
    if session.get_bind().dialect.name == "postgresql":
        for name in restored:
            _advance_sequences(session, metadata.tables[name])
    log.info("backup_restored", user_id=user_id, archive=path.name, rows=restored)
    return restored


def _advance_sequences(session: Session, table: Table) -> None:
    for column in table.primary_key.columns:
        if _python_type(column) is not int:
            continue
        preparer = session.get_bind().dialect.identifier_preparer
        quoted, quoted_column = preparer.quote(table.name), preparer.quote(column.name)
        sequence = session.execute(
            text("SELECT pg_get_serial_sequence(:table, :column)"),
            {"table": quoted, "column": column.name},
        ).scalar()
        if sequence:
            session.execute(
                text(
                    "SELECT setval(:sequence, GREATEST("
                    f"(SELECT max({quoted_column}) FROM {quoted}), 1))"
                ),
                {"sequence": sequence},
            )
