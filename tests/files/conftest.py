"""Fixtures of the files tests: generic rows for every user table, settings from the env."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from sqlalchemy.engine import Engine

import bgworkers
from bgworkers.settings import Settings, get_settings
from tests.files.helpers import (
    fill_user,
)


@pytest.fixture
def two_users(db_engine: Engine) -> tuple[int, int]:
    with db_engine.begin() as conn:
        first = fill_user(conn, rows_per_table=2, seed=1)
        second = fill_user(conn, rows_per_table=1, seed=2)
    return first, second


@pytest.fixture
def env_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings read from the environment with temp and backup dirs in ``tmp_path``.

    The actors read ``get_settings()``, as in production; the environment is how an operator
    configures them, so the test configures them the same way.
    """
    monkeypatch.setenv("BGW_TEMP_DIR", str(tmp_path / "temp"))
    monkeypatch.setenv("BGW_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("BGW_BACKUP_FANOUT_BATCH_SIZE", "2")
    get_settings.cache_clear()
    yield get_settings()
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def fresh_broker_connection(rabbitmq_url: str) -> None:
    """Drop this thread's RabbitMQ connection before ``app_broker`` purges its queues.

    ``app_broker`` closes the broker after each test but leaves the closed connection in the
    main thread's state, so a second test in the same run fails at purge; deleting the
    property (dramatiq's own way to reset it) makes the next use reconnect.
    """
    del bgworkers.broker.connection


@pytest.fixture
def files_worker(fresh_broker_connection: None, app_worker: dramatiq.Worker) -> dramatiq.Worker:
    return app_worker
