"""Per-user backups against real databases and real files: round trip, atomicity, retention."""

from __future__ import annotations

import enum
import gzip
import io
import json
import os
import stat
import tarfile
import uuid
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Interval,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    Time,
    Uuid,
    event,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from bgworkers.db.engine import UtcDateTime
from bgworkers.db.tables import every_table
from bgworkers.files.actors import record_backup_messages
from bgworkers.files.archive import (
    FORMAT,
    TEMP_PREFIX,
    BackupError,
    InvalidBackup,
    archive_name,
    decode_value,
    encode_value,
    list_archives,
    run_id_for,
    user_dir,
)
from bgworkers.files.backup import backup_user, enqueue_user_backups
from bgworkers.files.ownership import owned_rows, secret_columns, user_tables
from bgworkers.files.restore import RestoreConflict, read_archive, restore_archive, verify_archive
from bgworkers.outbox.models import OutboxMessage
from bgworkers.users.models import User
from tests.files.helpers import archived_rows, database_rows, delete_user, fill_user

NOW = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)
RUN = run_id_for(NOW)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def back_up(engine: Engine, user_id: int, backup_dir: Path, **kwargs):  # type: ignore[no-untyped-def]
    options = {"run_id": RUN, "keep": 4, "now": NOW, **kwargs}
    with Session(engine) as session:
        result = backup_user(session=session, user_id=user_id, backup_dir=backup_dir, **options)
        session.commit()
    return result


def test_user_tables_are_discovered_from_the_metadata() -> None:
    every_table()  # the metadata is whole only once the table modules are loaded
    with_user_id = {t.name for t in SQLModel.metadata.tables.values() if "user_id" in t.columns}
    expected = ({"users"} | with_user_id | {"email_outbox"}) - {"user_sessions"}
    names = [t.name for t in user_tables()]
    assert names[0] == "users"
    assert set(names) == expected
    assert "calendar_connections" in names and "reminders" in names


def test_round_trip_of_every_user_table(
    db_engine: Engine, two_users: tuple[int, int], tmp_path: Path, registry
) -> None:
    user_id, other_id = two_users
    with db_engine.connect() as conn:
        before = database_rows(conn, user_id)
    assert all(len(rows) >= 1 for rows in before.values())  # every table has data
    assert len(before["email_outbox"]) == 2  # the user's outbox history, by recipient
    archived = archived_rows(before, restored=False)

    result = back_up(db_engine, user_id, tmp_path)

    assert result.outcome == "written"
    contents = read_archive(result.path)
    assert contents.manifest["format"] == FORMAT
    assert set(contents.manifest["tables"]) == {t.name for t in user_tables()}
    assert contents.rows == archived  # every table, every column, every value but secrets
    assert dict(result.rows) == {name: len(rows) for name, rows in archived.items()}
    assert registry.get_sample_value("bgworkers_files_backups_total", {"outcome": "written"}) == 1

    outbox = SQLModel.metadata.tables["email_outbox"]
    outbox_ids = [row["id"] for row in before["email_outbox"]]
    with db_engine.begin() as conn:
        delete_user(conn, user_id)
        assert database_rows(conn, user_id)["users"] == []
        # The outbox has no foreign key: its rows outlive the user; one is purged meanwhile.
        left = conn.execute(select(outbox.c.id).where(outbox.c.id.in_(outbox_ids))).all()
        assert len(left) == 2
        conn.execute(outbox.delete().where(outbox.c.id == outbox_ids[0]))
    with Session(db_engine) as session:
        restored = restore_archive(result.path, session=session)
        session.commit()
    # Outbox rows that outlived the user are kept as they are; the deleted one comes back.
    assert restored == {**{n: len(rows) for n, rows in archived.items()}, "email_outbox": 1}
    with db_engine.begin() as conn:
        after = database_rows(conn, user_id)
        assert after == {**archived_rows(before, restored=True), "user_sessions": []}
        # The other user's data was neither archived nor disturbed.
        assert database_rows(conn, other_id)["users"][0]["id"] == other_id
        # Ids keep being handed out past the restored ones (PostgreSQL sequences moved).
        new_user = fill_user(conn, rows_per_table=1, seed=3)
    assert new_user > max(user_id, other_id)


def test_restore_refuses_a_user_that_still_exists(
    db_engine: Engine, two_users: tuple[int, int], tmp_path: Path
) -> None:
    result = back_up(db_engine, two_users[0], tmp_path)
    with Session(db_engine) as session, pytest.raises(RestoreConflict):
        restore_archive(result.path, session=session)


def test_owner_only_permissions_even_with_a_permissive_umask(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    with sqlite_engine.begin() as conn:
        user_id = fill_user(conn, rows_per_table=1, seed=1)
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir(mode=0o755)
    old_umask = os.umask(0)
    try:
        result = back_up(sqlite_engine, user_id, backup_dir)
    finally:
        os.umask(old_umask)
    assert mode(backup_dir) == 0o700
    assert mode(result.path.parent) == 0o700
    assert mode(result.path) == 0o600


def test_a_failed_write_leaves_no_archive_and_no_temp_file(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    with sqlite_engine.begin() as conn:
        user_id = fill_user(conn, rows_per_table=1, seed=1)
    seen: list[Path] = []

    def crash_before_rename(temp: Path) -> None:
        seen.append(temp)
        # The fully written temp file exists, owner-only, but is not listed as an archive.
        assert temp.name.startswith(TEMP_PREFIX)
        assert mode(temp) == 0o600
        assert list_archives(tmp_path, user_id) == []
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        back_up(sqlite_engine, user_id, tmp_path, before_publish=crash_before_rename)
    assert seen
    assert list_archives(tmp_path, user_id) == []
    assert list((tmp_path / f"user-{user_id}").iterdir()) == []

    # The next delivery of the same message writes it.
    assert back_up(sqlite_engine, user_id, tmp_path).outcome == "written"
    assert len(list_archives(tmp_path, user_id)) == 1


def test_a_crash_leftover_is_never_an_archive_and_is_cleaned_once_stale(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    with sqlite_engine.begin() as conn:
        user_id = fill_user(conn, rows_per_table=1, seed=1)
    good = back_up(sqlite_engine, user_id, tmp_path).path
    directory = good.parent
    # What a crash in mid-write leaves: a truncated archive under a temp name.
    fresh = directory / f"{TEMP_PREFIX}fresh.tmp"
    stale = directory / f"{TEMP_PREFIX}stale.tmp"
    for leftover in (fresh, stale):
        leftover.write_bytes(good.read_bytes()[:100])
    old, recent = (NOW - timedelta(days=2)).timestamp(), (NOW - timedelta(hours=1)).timestamp()
    os.utime(stale, (old, old))
    os.utime(fresh, (recent, recent))
    with pytest.raises(InvalidBackup):
        verify_archive(stale)

    assert list_archives(tmp_path, user_id) == [good]
    back_up(sqlite_engine, user_id, tmp_path, run_id=run_id_for(NOW + timedelta(days=7)))
    assert not stale.exists()
    assert fresh.exists()  # may be a write in progress


def test_retention_keeps_the_newest_archives(
    sqlite_engine: Engine, tmp_path: Path, registry
) -> None:
    with sqlite_engine.begin() as conn:
        user_id = fill_user(conn, rows_per_table=1, seed=1)
    runs = [run_id_for(NOW + timedelta(weeks=w)) for w in range(6)]
    for run_id in runs:
        back_up(sqlite_engine, user_id, tmp_path, run_id=run_id, keep=4)
    assert [p.name for p in list_archives(tmp_path, user_id)] == [
        f"user-{user_id}-{run_id}.tar.gz" for run_id in runs[2:]
    ]
    assert registry.get_sample_value("bgworkers_files_backups_pruned_total") == 2


def test_second_delivery_keeps_the_valid_archive_and_rewrites_a_damaged_one(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    with sqlite_engine.begin() as conn:
        user_id = fill_user(conn, rows_per_table=1, seed=1)
    first = back_up(sqlite_engine, user_id, tmp_path)
    inode = os.stat(first.path).st_ino
    again = back_up(sqlite_engine, user_id, tmp_path)
    assert again.outcome == "already_present"
    assert os.stat(first.path).st_ino == inode

    first.path.write_bytes(first.path.read_bytes()[:-40])  # damaged on disk
    repaired = back_up(sqlite_engine, user_id, tmp_path)
    assert repaired.outcome == "written"
    verify_archive(repaired.path)


def _rewrite_member(archive: Path, member: str, change) -> None:  # type: ignore[no-untyped-def]
    with tarfile.open(archive, "r:gz") as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar.getmembers()]  # type: ignore[union-attr]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            if info.name == member:
                data = change(data)
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive.write_bytes(gzip.compress(buffer.getvalue()))


def test_verify_detects_tampered_rows_and_foreign_rows(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    with sqlite_engine.begin() as conn:
        user_id = fill_user(conn, rows_per_table=1, seed=1)
    path = back_up(sqlite_engine, user_id, tmp_path).path
    verify_archive(path)

    _rewrite_member(path, "tables/users.jsonl", lambda data: data.replace(b"email", b"emaiL"))
    with pytest.raises(InvalidBackup, match="checksum mismatch for users"):
        verify_archive(path)

    _rewrite_member(path, "manifest.json", lambda data: b"{not json")
    with pytest.raises(InvalidBackup, match="manifest is not JSON"):
        read_archive(path)

    path.write_bytes(b"not a gzip file")
    with pytest.raises(InvalidBackup, match="not a readable archive"):
        verify_archive(path)


def test_missing_user_writes_nothing(sqlite_engine: Engine, tmp_path: Path, registry) -> None:
    backup_dir = tmp_path / "backups"
    result = back_up(sqlite_engine, 4242, backup_dir)
    assert result.outcome == "user_missing"
    assert list_archives(backup_dir, 4242) == []
    assert not backup_dir.exists()  # not even an empty directory
    assert (
        registry.get_sample_value("bgworkers_files_backups_total", {"outcome": "user_missing"}) == 1
    )


@pytest.mark.parametrize(
    "run_id",
    [
        "../../etc",
        RUN + "\n",  # `$` alone would accept it; its archive would escape retention
        "\uff12\uff10\uff12\uff16" + RUN[4:],  # full-width digits match \\d in a str regex
        RUN + "x" * 10_000,
    ],
    ids=["path", "trailing-newline", "full-width-digits", "huge"],
)
def test_bad_run_id_is_refused(sqlite_engine: Engine, tmp_path: Path, run_id: str) -> None:
    with pytest.raises(BackupError, match="run id") as caught:
        back_up(sqlite_engine, 1, tmp_path, run_id=run_id)
    assert len(str(caught.value)) < 200
    assert not any(tmp_path.rglob("*.tar.gz"))


def test_only_strict_ascii_archive_names_are_listed(tmp_path: Path) -> None:
    directory = user_dir(tmp_path, 7)
    directory.mkdir(parents=True)
    good = directory / archive_name(7, RUN)
    good.write_bytes(b"")
    (directory / (archive_name(7, RUN) + "\n")).write_bytes(b"")
    (directory / archive_name(7, "\uff12" + RUN[1:])).write_bytes(b"")
    assert list_archives(tmp_path, 7) == [good]


def test_fanout_records_each_page_in_its_transaction(db_engine: Engine, registry) -> None:
    with Session(db_engine) as session:
        users = [User(email=f"u{n}@example.com") for n in range(5)]
        session.add_all(users)
        session.commit()
        ids = [user.id for user in users]
    commits: list[int] = []
    event.listen(db_engine, "commit", lambda conn: commits.append(1))
    seen: list[tuple[list[int], str, int]] = []

    def record(session: Session, page: list[int], run_id: str) -> None:
        seen.append((page, run_id, len(commits)))
        record_backup_messages(session, page, run_id)

    total = enqueue_user_backups(engine=db_engine, run_id=RUN, enqueue=record, batch_size=2)

    assert total == 5
    # Pages of 2, 2 and 1, each recorded before its own transaction committed.
    assert seen == [(sorted(ids)[:2], RUN, 0), (sorted(ids)[2:4], RUN, 1), ([max(ids)], RUN, 2)]
    assert len(commits) == 3
    assert registry.get_sample_value("bgworkers_files_backup_users_enqueued_total") == 5
    # A redelivered fan-out message (same run id) records no second message per user.
    enqueue_user_backups(engine=db_engine, run_id=RUN, enqueue=record, batch_size=2)
    with Session(db_engine) as session:
        rows = session.exec(select(OutboxMessage)).all()
    assert sorted(json.loads(row.body)["args"][0] for row in rows) == sorted(ids)
    assert {row.actor for row in rows} == {"backup_one_user"}
    with Session(db_engine) as session:
        assert len(session.exec(select(User)).all()) == 5  # reading users changed nothing


def test_values_of_every_column_type_survive_the_archive_format() -> None:
    class Colour(enum.Enum):
        RED = "r"
        BLUE = "b"

    table = Table(
        "sample",
        MetaData(),
        Column("blob", LargeBinary),
        Column("amount", Numeric(10, 2)),
        Column("token", Uuid),
        Column("colour", SAEnum(Colour)),
        Column("day", Date),
        Column("at", Time),
        Column("stamp", UtcDateTime()),
        Column("naive", DateTime),
        Column("wait", Interval),
        Column("doc", JSON),
        Column("ratio", Float),
        Column("flag", Boolean),
    )
    values = {
        "blob": b"\x00\xff\x10",
        "amount": Decimal("12.34"),
        "token": uuid.uuid4(),
        "colour": Colour.BLUE,
        "day": date(2026, 2, 28),
        "at": dt_time(23, 59, 58, 123),
        "stamp": datetime(2026, 3, 29, 1, 30, 0, 5, tzinfo=UTC),
        "naive": datetime(2026, 3, 29, 1, 30),
        "wait": timedelta(days=1, seconds=3.5),
        "doc": {"nested": [1, "é", None]},
        "ratio": 0.1,
        "flag": False,
    }
    for name, value in values.items():
        through_json = json.loads(json.dumps(encode_value(value)))
        assert decode_value(table.c[name], through_json) == value, name
        assert decode_value(table.c[name], None) is None
    with pytest.raises(BackupError, match="cannot archive"):
        encode_value(object())


def test_archives_hold_no_tokens_and_no_session_ids(sqlite_engine: Engine, tmp_path: Path) -> None:
    with sqlite_engine.begin() as conn:
        user_id = fill_user(conn, rows_per_table=1, seed=1)
        rows = database_rows(conn, user_id)
    secrets = [
        row[name]
        for table in user_tables()
        for name in secret_columns(table)
        for row in rows[table.name]
    ]
    secrets += [row["id"] for row in rows["user_sessions"]]
    assert len(secrets) >= 4  # two calendar tokens, one Notion token, a session id
    assert all(isinstance(secret, str) and len(secret) > 3 for secret in secrets)

    path = back_up(sqlite_engine, user_id, tmp_path).path

    with tarfile.open(path, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert "tables/user_sessions.jsonl" not in members
    everything = b"".join(members.values()).decode("utf-8")
    for secret in secrets:
        assert secret not in everything
        assert json.dumps(secret)[1:-1] not in everything  # nor in its JSON-escaped form
    manifest = json.loads(members["manifest.json"])
    assert manifest["tables"]["calendar_connections"]["secret_columns_omitted"] == [
        "access_token",
        "refresh_token",
    ]


def test_owned_rows_read_in_keyset_batches_are_every_row_in_key_order(
    db_engine: Engine,
) -> None:
    with db_engine.begin() as conn:
        fill_user(conn, rows_per_table=5, seed=1)  # another user's rows in the same tables
        user_id = fill_user(conn, rows_per_table=5, seed=2)
        expected = database_rows(conn, user_id)
    with Session(db_engine) as session:
        email = session.exec(select(User.email).where(User.id == user_id)).one()
        for table in user_tables():
            rows = owned_rows(session, table, user_id, email, batch_size=2)
            assert [dict(row) for row in rows] == expected[table.name], table.name


def test_the_per_user_outbox_query_uses_the_recipient_index(postgres_engine: Engine) -> None:
    """A backup's outbox query finds a user's emails through ``lower(recipient)``'s index,
    not by reading the whole outbox (the plan of the very statement ``owned_rows`` sends)."""
    with postgres_engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO email_outbox (idempotency_key, recipient, subject, body_text, status,"
            " attempts, dispatch_after, created_at, updated_at)"
            " SELECT 'k' || n, 'User' || n || '@Example.org', 's', 'b', 'sent', 1,"
            " now(), now(), now() FROM generate_series(1, 5000) AS n"
        )
        conn.exec_driver_sql("ANALYZE email_outbox")
    sent: list[tuple[str, object]] = []

    def remember(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        sent.append((statement, parameters))

    outbox = SQLModel.metadata.tables["email_outbox"]
    event.listen(postgres_engine, "before_cursor_execute", remember)
    try:
        with Session(postgres_engine) as session:
            rows = list(owned_rows(session, outbox, 0, "user42@example.org"))
    finally:
        event.remove(postgres_engine, "before_cursor_execute", remember)
    assert [row["recipient"] for row in rows] == ["User42@Example.org"]
    statement, parameters = sent[0]
    with postgres_engine.connect() as conn:
        plan = "\n".join(
            line for (line,) in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        )
    assert "ix_email_outbox_recipient_lower" in plan, plan
    assert "Seq Scan" not in plan, plan
