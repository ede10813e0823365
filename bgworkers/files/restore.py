"""Reading a per-user archive back: verify it, decode it, restore it into the database.

A restore is for a user who is gone (deleted by mistake, or a fresh database): it refuses
when the user's row still exists rather than merge over live data. Archives hold no
credentials, so the restored rows of a table that declares ``info[SECRET_COLUMNS]`` get those
columns empty and the table's ``info[RESTORED_VALUES]`` (a connection comes back
``reauth_required``). The operator's command is ``bgworkers backup restore USER_ID ARCHIVE``
(:mod:`bgworkers.files.commands`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, select, text
from sqlmodel import Session

from bgworkers.db.tables import every_table
from bgworkers.files.archive import (
    DAMAGED,
    USERS_TABLE,
    BackupError,
    InvalidBackup,
    check_gzip_header,
    check_member,
    checked_lines,
    decode_value,
    load_manifest,
    open_archive,
    python_type,
    read_to_end,
)
from bgworkers.files.ownership import (
    READ_BATCH,
    owner_email_column,
    owns_row,
    restored_values,
    secret_columns,
)
from bgworkers.logs.loggers import get_logger

log = get_logger(__name__)


class RestoreConflict(BackupError):
    """The user still exists in the database; restoring over live data is refused."""


class ArchiveOfAnotherUser(BackupError):
    """The archive holds another user than the one the restore was asked for."""


@dataclass(frozen=True)
class BackupContents:
    """A verified archive: its manifest and every table's rows, decoded to Python values."""

    manifest: Mapping[str, Any]
    rows: Mapping[str, list[dict[str, Any]]]


def verify_archive(path: Path) -> dict[str, Any]:
    """Check an archive's manifest, members, checksums and row counts; return the manifest.

    Streams each member, so memory stays small whatever the archive's size. Raises
    :class:`InvalidBackup` naming the first problem.
    """
    with open_archive(path) as tar:
        try:
            manifest = load_manifest(tar, path)
            for table_name, entry in manifest["tables"].items():
                check_member(tar, path, table_name, entry)
            read_to_end(tar)
            created_at = datetime.fromisoformat(manifest["created_at"])
        except (*DAMAGED, ValueError) as exc:
            raise InvalidBackup(f"{path.name}: damaged archive: {exc!r}") from None
    check_gzip_header(path, created_at)
    return manifest


def read_archive(path: Path, *, metadata: MetaData | None = None) -> BackupContents:
    """Verify an archive and decode its rows with the column types of ``metadata``.

    Every row must belong to the archive's user and have exactly the manifest's columns;
    a table or column the schema no longer has is an :class:`InvalidBackup`.
    """
    metadata = metadata or every_table()
    with open_archive(path) as tar:
        try:
            manifest = load_manifest(tar, path)
            raw = {
                name: checked_lines(tar, path, name, entry)
                for name, entry in manifest["tables"].items()
            }
        except DAMAGED as exc:
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
            if set(row) != set(columns) or not owns_row(table, row, user_id, email):
                raise InvalidBackup(f"{path.name}: a row of {name} does not fit the manifest")
        decoded[name] = [
            {key: decode_value(table.c[key], value) for key, value in row.items()} for row in rows
        ]
    return BackupContents(manifest=manifest, rows=decoded)


def _restorable(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """A row as it goes back in: omitted secrets become empty, declared values replace."""
    secret = secret_columns(table)
    if not secret:
        return row
    for name in secret:
        if row.get(name) is None and not table.c[name].nullable:
            row[name] = ""
    row.update({k: v for k, v in restored_values(table).items() if k in table.columns})
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
    for start in range(0, len(wanted), READ_BATCH):
        chunk = wanted[start : start + READ_BATCH]
        present.update(session.scalars(select(key).where(key.in_(chunk))))
    return [row for row in rows if row[key.name] not in present]


def restore_archive(
    path: Path,
    *,
    session: Session,
    metadata: MetaData | None = None,
    expected_user_id: int | None = None,
) -> dict[str, int]:
    """Insert a verified archive's rows into the database; returns rows restored per table.

    Refuses with :class:`RestoreConflict` if the user's row still exists, and with
    :class:`ArchiveOfAnotherUser` if ``expected_user_id`` is given and the archive is not
    that user's. Tables are filled
    in dependency order; on PostgreSQL, id sequences are moved past the restored ids. Rows of
    email-owned tables still present are left as they are (and not counted). Nothing is
    committed here: the caller's transaction holds all of it or none.
    """
    metadata = metadata or every_table()
    contents = read_archive(path, metadata=metadata)
    users = metadata.tables[USERS_TABLE]
    user_id = contents.manifest["user_id"]
    if expected_user_id is not None and user_id != expected_user_id:
        raise ArchiveOfAnotherUser(f"{path.name} holds user {user_id}, not user {expected_user_id}")
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
        if python_type(column) is not int:
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
