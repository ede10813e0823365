"""The files actors through the real RabbitMQ, an in-process worker and a real database."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dramatiq
import pytest
from sqlalchemy.engine import Engine

from bgworkers import queues
from bgworkers.db.engine import utcnow
from bgworkers.files.actors import backup_user_data, cleanup_temp_files
from bgworkers.files.archive import list_archives
from bgworkers.files.restore import read_archive
from bgworkers.settings import Settings
from tests.files.helpers import archived_rows, database_rows, fill_user
from tests.platform_helpers import wait_for

pytestmark = pytest.mark.integration


def settle(broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
    broker.join(queues.FILES, timeout=30_000)
    worker.join()


def test_weekly_backup_fans_out_and_writes_every_users_archive(
    db_engine: Engine,
    env_settings: Settings,
    files_worker: dramatiq.Worker,
    app_broker: dramatiq.Broker,
) -> None:
    with db_engine.begin() as conn:
        users = [fill_user(conn, rows_per_table=1, seed=n) for n in range(1, 4)]

    backup_user_data.send()  # batch size 2 (env_settings): two pages of fan-out
    wait_for(
        lambda: all(list_archives(env_settings.backup_dir, u) for u in users),
        timeout_s=30,
        what="one archive per user",
    )
    settle(app_broker, files_worker)

    with db_engine.connect() as conn:
        for user_id in users:
            [archive] = list_archives(env_settings.backup_dir, user_id)
            assert read_archive(archive).rows == archived_rows(database_rows(conn, user_id))
    assert app_broker.get_queue_message_counts(queues.FILES) == (0, 0, 0)


def test_daily_cleanup_runs_through_the_broker(
    env_settings: Settings,
    tmp_path: Path,
    files_worker: dramatiq.Worker,
    app_broker: dramatiq.Broker,
) -> None:
    temp = env_settings.temp_dir
    old = (utcnow() - timedelta(hours=env_settings.temp_max_age_hours + 1)).timestamp()
    (temp / "nested").mkdir(parents=True)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    for path in (temp / "old.tmp", temp / "nested" / "old.tmp", temp / "new.tmp"):
        path.write_text("x")
    for path in (temp / "old.tmp", temp / "nested" / "old.tmp", temp / "nested"):
        os.utime(path, (old, old))
    (temp / "link").symlink_to(outside)
    os.utime(temp / "link", (old, old), follow_symlinks=False)

    cleanup_temp_files.send()
    wait_for(lambda: not (temp / "old.tmp").exists(), timeout_s=30, what="the cleanup")
    settle(app_broker, files_worker)

    assert sorted(p.name for p in temp.iterdir()) == ["new.tmp"]
    assert outside.read_text() == "keep"


def test_missing_temp_dir_is_dead_lettered_at_once(
    env_settings: Settings, files_worker: dramatiq.Worker, app_broker: dramatiq.Broker
) -> None:
    assert not env_settings.temp_dir.exists()
    cleanup_temp_files.send()
    wait_for(
        lambda: app_broker.get_queue_message_counts(queues.FILES)[2] == 1,
        timeout_s=30,
        what="the dead letter",
    )
    assert app_broker.get_queue_message_counts(queues.FILES)[:2] == (0, 0)
