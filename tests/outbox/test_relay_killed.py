"""The relay SIGKILLed mid-run and restarted: every message arrives, duplicates only from the
batches in flight (at most two), and the idempotent consumer applies each message once.

The relay is the real ``python -m bgworkers.outbox`` process; the database a SQLite file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dramatiq
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers import queues
from bgworkers.outbox import enqueue_many
from bgworkers.outbox.models import OutboxMessage
from tests.monitoring.ports import METRICS_PORTS, port_from
from tests.outbox import probe
from tests.outbox.probe import outbox_probe
from tests.platform_helpers import wait_for

pytestmark = pytest.mark.integration
TOTAL = 5_000
BATCH = 100
ROOT = Path(__file__).resolve().parents[2]


def published(engine: Engine) -> int:
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    with Session(engine) as session:
        return int(
            session.execute(
                select(func.count()).where(table.c.published_at.is_not(None))
            ).scalar_one()
        )


def start_relay(
    tmp_path: Path, rabbitmq_url: str, name: str, metrics_port: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BGW_BROKER_URL": rabbitmq_url,
        "BGW_DATABASE_URL": f"sqlite:///{tmp_path}/bgworkers.db",
        "BGW_METRICS_DIR": str(tmp_path / "metrics"),
        "BGW_OUTBOX_BATCH_SIZE": str(BATCH),
        "BGW_OUTBOX_LEASE_S": "2",  # the killed relay's lease expires quickly
        "BGW_RELAY_METRICS_PORT": str(metrics_port),  # the relay's own /metrics
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bgworkers.outbox"],
        env=env,
        cwd=tmp_path,
        stdout=(tmp_path / f"{name}.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def test_killed_relay_loses_nothing_and_duplicates_only_its_batches_in_flight(
    sqlite_engine: Engine,
    tmp_path: Path,
    rabbitmq_url: str,
    app_broker: dramatiq.Broker,
    no_worker_relay: None,
) -> None:
    with Session(sqlite_engine) as session:
        enqueue_many(session, outbox_probe, ((f"k{i}",) for i in range(TOTAL)))
        session.commit()

    metrics_port = port_from(METRICS_PORTS)
    first = start_relay(tmp_path, rabbitmq_url, "relay-1", metrics_port)
    try:
        deadline = time.monotonic() + 60
        while published(sqlite_engine) < TOTAL // 5:
            assert first.poll() is None and time.monotonic() < deadline, "relay did not run"
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    marked = published(sqlite_engine)
    assert marked < TOTAL, "killed too late to be mid-run"
    second = start_relay(tmp_path, rabbitmq_url, "relay-2", metrics_port)
    try:
        wait_for(lambda: published(sqlite_engine) == TOTAL, timeout_s=60, what="the restart")
        # Its own /metrics: what it published, and every queue's series from its start.
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            exposition = response.read().decode()
        assert (
            f'bgworkers_outbox_published_total{{queue="maintenance"}} {float(TOTAL - marked)}'
            in exposition
        )
        assert 'bgworkers_outbox_published_total{queue="email"} 0.0' in exposition
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    # Counted once the restart has published the rest, seconds after the kill: by then
    # RabbitMQ has long taken whatever the dead connection had sent (no pause to guess).
    in_queue = app_broker.get_queue_message_counts(queues.MAINTENANCE)[0]
    in_flight = in_queue - TOTAL  # published by the dead relay, never marked, sent again
    # At most the batch being published and the one being marked (see Relay.drain).
    assert 0 <= in_flight <= 2 * BATCH, (in_queue, marked)

    worker = dramatiq.Worker(app_broker, worker_timeout=100, worker_threads=4)
    worker.start()
    try:
        wait_for(lambda: len(probe.EFFECTS) == TOTAL, timeout_s=120, what="every message")
        app_broker.join(queues.MAINTENANCE, timeout=30_000)
        worker.join()
    finally:
        worker.stop()
    assert set(probe.EFFECTS) == {f"k{i}" for i in range(TOTAL)}
    assert set(probe.EFFECTS.values()) == {1}  # applied once each
    assert sum(probe.DELIVERIES.values()) == TOTAL + in_flight
    assert sum(1 for n in probe.DELIVERIES.values() if n > 1) == in_flight
