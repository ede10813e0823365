"""``bgworkers backup list|verify|restore`` run as an operator runs them: a subprocess against
real SQLite databases, checked by exit code, stdout, one-line stderr and the rows restored."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers import migrations
from bgworkers.db.engine import make_engine, session_scope
from bgworkers.files.archive import list_archives
from bgworkers.files.backup import backup_user
from bgworkers.files.commands import EXIT_CONFLICT, EXIT_DATABASE, EXIT_INVALID, EXIT_USAGE
from bgworkers.files.restore import InvalidBackup, verify_archive
from bgworkers.reminders.models import Reminder
from bgworkers.sync.models import STATUS_REAUTH_REQUIRED, CalendarConnection
from bgworkers.users.models import User
from tests.platform_helpers import free_port

NOW = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)
RUN = "20261129T010000Z"


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """stderr must be exactly one line, never a traceback."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert "Traceback" not in self.err
        return lines[0]


@dataclass
class Setup:
    backup_dir: Path
    source_url: str
    user_id: int
    archive: Path

    def run(self, *args: str, database_url: str | None = None) -> Run:
        env = {
            **os.environ,
            "BGW_DATABASE_URL": database_url or self.source_url,
            "BGW_BACKUP_DIR": str(self.backup_dir),
            "BGW_LOG_LEVEL": "WARNING",
        }
        done = subprocess.run(
            [sys.executable, "-m", "bgworkers.cli", "backup", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        return Run(done.returncode, done.stdout, done.stderr)


def migrated_database(path: Path) -> tuple[str, Engine]:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    return url, engine


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """One user with a reminder and a calendar connection, backed up once."""
    root = tmp_path_factory.mktemp("backup_command")
    url, engine = migrated_database(root / "source.db")
    with session_scope(engine) as session:
        user = User(email="ada@example.com", display_name="Ada", created_at=NOW)
        session.add(user)
        session.flush()
        assert user.id is not None
        user_id = user.id
        session.add(Reminder(user_id=user_id, text="call", timezone="UTC", due_at=NOW))
        session.add(
            CalendarConnection(user_id=user_id, access_token="secret-a", refresh_token="secret-r")
        )
    backup_dir = root / "backups"
    with Session(engine) as session:
        backup_user(
            session=session, user_id=user_id, run_id=RUN, backup_dir=backup_dir, keep=4, now=NOW
        )
    engine.dispose()
    [archive] = list_archives(backup_dir, user_id)
    yield Setup(backup_dir=backup_dir, source_url=url, user_id=user_id, archive=archive)


def test_list_prints_the_users_archives(setup: Setup) -> None:
    done = setup.run("list", str(setup.user_id))
    assert done.code == 0, done.err
    assert done.out.strip().splitlines() == [str(setup.archive)]
    missing = setup.run("list", "999")
    assert missing.code == EXIT_INVALID
    assert "user 999 has no archives" in missing.error_line


def test_verify_accepts_a_good_archive_and_names_what_is_wrong(
    setup: Setup, tmp_path: Path
) -> None:
    done = setup.run("verify", str(setup.archive))
    assert done.code == 0, done.err
    assert f"valid, user {setup.user_id}, run {RUN}, 3 rows in " in done.out
    damaged = tmp_path / setup.archive.name
    shutil.copy(setup.archive, damaged)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    bad = setup.run("verify", str(damaged))
    assert bad.code == EXIT_INVALID
    assert bad.error_line.startswith(f"bgworkers backup verify: {damaged.name}: ")
    gone = setup.run("verify", str(tmp_path / "nothing.tar.gz"))
    assert gone.code == EXIT_INVALID
    assert "no archive at" in gone.error_line


def test_every_flipped_byte_is_refused(setup: Setup, tmp_path: Path) -> None:
    # Where the damage falls decides which layer notices (the gzip header check, gzip's
    # inflater, its CRC at the end of the stream, tar, the checksums): every one must end as
    # InvalidBackup, never another exception and never a pass.
    original = setup.archive.read_bytes()
    damaged = tmp_path / setup.archive.name
    passed = []
    for position in range(len(original)):
        data = bytearray(original)
        data[position] ^= 0xFF
        damaged.write_bytes(bytes(data))
        try:
            verify_archive(damaged)
        except InvalidBackup:
            continue
        passed.append(position)
    assert passed == [], f"{len(passed)} of {len(original)} damaged bytes passed: {passed}"


def test_an_archive_stamped_with_its_write_time_still_verifies(
    setup: Setup, tmp_path: Path
) -> None:
    """Archives written before the gzip header's time was 0 carry their write time."""
    written_later = NOW.timestamp() + 3 * 86_400  # a backup message that waited three days
    older = tmp_path / setup.archive.name
    tar = gzip.decompress(setup.archive.read_bytes())
    older.write_bytes(gzip.compress(tar, compresslevel=6, mtime=int(written_later)))
    assert verify_archive(older)["user_id"] == setup.user_id


def test_restore_into_a_fresh_database_then_refuses_a_second_time(
    setup: Setup, tmp_path: Path
) -> None:
    url, engine = migrated_database(tmp_path / "fresh.db")
    done = setup.run("restore", str(setup.user_id), "latest", database_url=url)
    assert done.code == 0, done.err
    # The user, the reminder and the calendar connection; every other table is empty.
    assert f"restored user {setup.user_id} from {setup.archive.name}: 3 rows in " in done.out
    with Session(engine) as session:
        user = session.get(User, setup.user_id)
        assert user is not None and user.email == "ada@example.com"
        assert session.exec(select(func.count()).select_from(Reminder)).one() == 1
        connection = session.exec(select(CalendarConnection)).one()
        assert connection.status == STATUS_REAUTH_REQUIRED
        assert connection.access_token == "" and connection.refresh_token == ""
    engine.dispose()
    again = setup.run("restore", str(setup.user_id), RUN, database_url=url)
    assert again.code == EXIT_CONFLICT
    assert again.error_line == (
        f"bgworkers backup restore: user {setup.user_id} exists; "
        f"delete it before restoring {setup.archive.name}"
    )


def test_restore_refuses_an_archive_of_another_user(setup: Setup, tmp_path: Path) -> None:
    url, engine = migrated_database(tmp_path / "fresh.db")
    engine.dispose()
    other = setup.user_id + 1
    done = setup.run("restore", str(other), str(setup.archive), database_url=url)
    assert done.code == EXIT_USAGE
    assert done.error_line.endswith(f"holds user {setup.user_id}, not user {other}")


def test_bad_arguments_and_a_database_without_schema(setup: Setup, tmp_path: Path) -> None:
    bad_id = setup.run("restore", "ada", str(setup.archive))
    assert bad_id.code == EXIT_USAGE
    assert "argument USER_ID: must be a positive whole number, not 'ada'" in bad_id.err
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    done = setup.run("restore", str(setup.user_id), str(setup.archive), database_url=empty)
    assert done.code == EXIT_DATABASE
    assert done.error_line.startswith("bgworkers backup restore: database error: ")
    assert "no such table" in done.error_line


def test_a_database_that_does_not_answer_is_exit_3(setup: Setup) -> None:
    """The code every ``bgworkers`` command gives for a service that is not reachable."""
    url = f"postgresql+psycopg://postgres:secret@127.0.0.1:{free_port()}/bgworkers"
    done = setup.run("restore", str(setup.user_id), str(setup.archive), database_url=url)
    assert done.code == 3
    assert done.error_line.startswith("bgworkers backup restore: the database does not answer")
    assert "secret" not in done.error_line
