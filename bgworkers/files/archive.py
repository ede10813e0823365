"""The per-user archive format: names, value encoding, tar writing and checksummed reading.

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

This module knows nothing of the database beyond column types: what goes in is chosen by
:mod:`bgworkers.files.ownership`, made by :mod:`bgworkers.files.backup` and read back by
:mod:`bgworkers.files.restore`.
"""

from __future__ import annotations

import base64
import enum
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Table, TypeDecorator

from bgworkers.errors import PermanentError

FORMAT = "bgworkers-user-backup/1"
MANIFEST = "manifest.json"
#: Every archive holds the user's row of this table; its ``id`` and ``email`` name the owner.
USERS_TABLE = "users"
# Strict ASCII (``re.ASCII``: no full-width digits) and ``fullmatch`` (``$`` would accept a
# trailing newline): run ids become file names, and one retention does not see is never pruned.
RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z", re.ASCII)
ARCHIVE_NAME = re.compile(
    r"user-(?P<user_id>[0-9]+)-(?P<run_id>[0-9]{8}T[0-9]{6}Z)\.tar\.gz", re.ASCII
)
TEMP_PREFIX = ".partial-"
#: Table files larger than this are spooled to disk while the archive is written, in bytes.
_SPOOL_BYTES = 8 * 1024 * 1024
#: Read size when streaming a member through SHA-256, in bytes.
_CHUNK_BYTES = 1024 * 1024


class BackupError(PermanentError):
    """A backup cannot be made or read as asked; retrying will not change that."""


class InvalidBackup(BackupError):
    """An archive fails verification: missing member, bad checksum, or rows that do not fit."""


#: What reading a damaged archive may raise, turned into :class:`InvalidBackup` by callers.
DAMAGED = (OSError, tarfile.TarError, EOFError, KeyError, TypeError, zlib.error)

# --- names -------------------------------------------------------------------------------


def run_id_for(moment: datetime) -> str:
    """The run id of a backup started at ``moment`` (aware): ``YYYYMMDDTHHMMSSZ`` in UTC."""
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def check_run_id(run_id: str) -> None:
    """Raise :class:`BackupError` unless ``run_id`` has the form ``YYYYMMDDTHHMMSSZ``."""
    if not RUN_ID.fullmatch(run_id):
        raise BackupError(f"run id {run_id[:40]!r} is not of the form YYYYMMDDTHHMMSSZ")


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


def python_type(column: Column[Any]) -> type | None:
    """The Python type of a column's values; a TypeDecorator that does not say defers to its
    underlying type (``Interval`` says timedelta although it stores a datetime on SQLite)."""
    type_: Any = column.type
    while True:
        try:
            found: type = type_.python_type
        except NotImplementedError:
            found = object
        if found is not object or not isinstance(type_, TypeDecorator):
            return None if found is object else found
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
    kind = python_type(column)
    if value is None or kind is None:
        return value
    if kind is datetime:
        return datetime.fromisoformat(value)
    if kind is date:
        return date.fromisoformat(value)
    if kind is dt_time:
        return dt_time.fromisoformat(value)
    if kind is bytes:
        return base64.b64decode(value)
    if kind is timedelta:
        return timedelta(seconds=value)
    if kind in (Decimal, uuid.UUID):
        return kind(value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind[value]
    return value


def _row_line(row: Mapping[Any, Any], secret: frozenset[str]) -> bytes:
    encoded = {name: None if name in secret else encode_value(value) for name, value in row.items()}
    line = json.dumps(encoded, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return line.encode("utf-8") + b"\n"


# --- writing -----------------------------------------------------------------------------


def private_dir(path: Path) -> Path:
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


def _add_bytes(tar: tarfile.TarFile, name: str, data: Any, size: int, mtime: float) -> None:
    """Add a member owned by nobody in particular, mode 0600, stamped ``mtime``."""
    info = tarfile.TarInfo(name)
    info.mode = 0o600
    info.mtime = int(mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.size = size
    tar.addfile(info, data)


#: One table to archive: the table, its secret columns (written as null) and its rows.
TableRows = tuple[Table, frozenset[str], Iterable[Mapping[Any, Any]]]


def write_archive(
    out: io.BufferedWriter,
    *,
    user_id: int,
    run_id: str,
    now: datetime,
    tables: Iterable[TableRows],
) -> dict[str, int]:
    """Write the tar of ``tables`` and its manifest to ``out``; returns rows per table.

    Each table's file is spooled (to disk past a few MB) while its checksum is taken, so
    memory stays bounded whatever the user's size.
    """
    mtime = now.timestamp()
    entries: dict[str, Any] = {}
    # gzip's header time is 0 (as ``gzip -n``): check_gzip_header can then refuse any change.
    with (
        gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=out, mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w") as tar,
    ):
        for table, secret, rows in tables:
            digest, count = hashlib.sha256(), 0
            with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
                for row in rows:
                    line = _row_line(row, secret)
                    digest.update(line)
                    spool.write(line)
                    count += 1
                size = spool.tell()
                spool.seek(0)
                member = f"tables/{table.name}.jsonl"
                _add_bytes(tar, member, spool, size, mtime)
            entries[table.name] = {
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
            "tables": entries,
        }
        data = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
        _add_bytes(tar, MANIFEST, io.BytesIO(data), len(data), mtime)
    return {name: entry["rows"] for name, entry in entries.items()}


def publish(
    directory: Path,
    final: Path,
    write: Callable[[io.BufferedWriter], dict[str, int]],
    before_publish: Callable[[Path], None] | None,
) -> tuple[dict[str, int], int]:
    """Have ``write`` fill a temp file in ``directory``, then rename it to ``final``.

    Returns what ``write`` returned and the size in bytes. The temp file is fsync'ed before
    the rename and the directory after it; on any failure the temp file is removed.
    """
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


# --- reading -----------------------------------------------------------------------------


def open_archive(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:gz")
    except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
        raise InvalidBackup(f"{path.name}: not a readable archive: {exc}") from None


#: Values of the gzip header's XFL byte that Python's gzip writes (levels 1..9).
_GZIP_XFL = frozenset({0, 2, 4})
#: Python's gzip writes 255 ("unknown") in the header's OS byte.
_GZIP_OS = 255
#: How far from the manifest's ``created_at`` an archive's gzip time may be: archives made
#: before that time was 0 carry the second they were written (later than ``created_at`` by
#: as long as the message waited). A flipped byte of a 0 time lands in 1970 or 2105.
_GZIP_MTIME_SLACK_S = 366 * 86_400


def check_gzip_header(path: Path, created_at: datetime) -> None:
    """Refuse a gzip header whose time, XFL or OS byte is not what an archive gets.

    Why: gzip's own checks skip those six bytes (RFC 1952 leaves them informative), so a
    damaged byte there would pass as a sound archive. Raises :class:`InvalidBackup`.
    """
    with path.open("rb") as raw:
        header = raw.read(10)
    if len(header) < 10:
        raise InvalidBackup(f"{path.name}: damaged archive: gzip header cut short")
    mtime = int.from_bytes(header[4:8], "little")
    recent = abs(mtime - created_at.timestamp()) <= _GZIP_MTIME_SLACK_S
    if (mtime != 0 and not recent) or header[8] not in _GZIP_XFL or header[9] != _GZIP_OS:
        raise InvalidBackup(f"{path.name}: damaged archive: gzip header {header.hex()}")


def read_to_end(tar: tarfile.TarFile) -> None:
    """Decompress what follows the members (tar padding, end blocks), so that gzip checks
    the whole stream's CRC and length; a damaged byte there raises one of ``DAMAGED``."""
    stream = tar.fileobj
    assert stream is not None
    while stream.read(1 << 16):
        pass


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


def load_manifest(tar: tarfile.TarFile, path: Path) -> dict[str, Any]:
    """The archive's manifest, checked against the archive's name and members."""
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


def checked_lines(
    tar: tarfile.TarFile, path: Path, table_name: str, entry: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """A table file's rows as JSON objects, after its checksum and row count are checked."""
    data = _member_bytes(tar, entry["file"], path)
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise InvalidBackup(f"{path.name}: checksum mismatch for {table_name}")
    try:
        rows = [json.loads(line) for line in data.splitlines()]
    except ValueError as exc:
        raise InvalidBackup(f"{path.name}: {table_name} holds a bad line: {exc}") from None
    _check_count(path, table_name, len(rows), entry)
    return rows


def check_member(tar: tarfile.TarFile, path: Path, name: str, entry: Mapping[str, Any]) -> None:
    """Stream one table file through SHA-256 and count its lines, without holding it."""
    handle = tar.extractfile(entry["file"])
    if handle is None:
        raise InvalidBackup(f"{path.name}: {entry['file']} is not a regular file")
    digest, lines = hashlib.sha256(), 0
    with handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
            lines += chunk.count(b"\n")
    if digest.hexdigest() != entry["sha256"]:
        raise InvalidBackup(f"{path.name}: checksum mismatch for {name}")
    _check_count(path, name, lines, entry)


def _check_count(path: Path, name: str, rows: int, entry: Mapping[str, Any]) -> None:
    if rows != entry["rows"]:
        raise InvalidBackup(f"{path.name}: {name} has {rows} rows, manifest says {entry['rows']}")
