"""The files actors' declared policy: queue, schedule, time limits, idempotent per-user runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bgworkers import queues
from bgworkers.files.actors import backup_one_user, backup_user_data, cleanup_temp_files
from bgworkers.files.archive import list_archives
from bgworkers.settings import Settings
from tests.files.helpers import fill_user

# RabbitMQ's consumer_timeout: a message held longer gets its channel closed.
CONSUMER_TIMEOUT_MS = 30 * 60_000


@pytest.mark.parametrize("actor", [cleanup_temp_files, backup_user_data, backup_one_user])
def test_files_actors_are_on_the_files_queue_with_explicit_limits(actor) -> None:  # type: ignore[no-untyped-def]
    assert actor.queue_name == queues.FILES
    assert actor.options["time_limit"] < CONSUMER_TIMEOUT_MS


def test_periodic_actors_and_the_per_user_one() -> None:
    assert "periodic" in cleanup_temp_files.options
    assert "periodic" in backup_user_data.options
    assert "periodic" not in backup_one_user.options
    assert backup_one_user.options["max_retries"] == 3


def test_per_user_actor_twice_writes_one_archive(
    sqlite_engine: Engine, env_settings: Settings
) -> None:
    with sqlite_engine.begin() as conn:
        user_id = fill_user(conn, rows_per_table=1, seed=1)
    backup_one_user(user_id, "20261129T010000Z")
    backup_one_user(user_id, "20261129T010000Z")  # at-least-once delivery
    [archive] = list_archives(env_settings.backup_dir, user_id)
    assert archive.stat().st_mode & 0o777 == 0o600


def test_cleanup_actor_dry_run_deletes_nothing(env_settings: Settings, tmp_path: Path) -> None:
    env_settings.temp_dir.mkdir()
    old = env_settings.temp_dir / "old"
    old.write_text("x")
    os.utime(old, (0, 0))
    cleanup_temp_files(dry_run=True)
    assert old.exists()
    cleanup_temp_files()
    assert not old.exists()
