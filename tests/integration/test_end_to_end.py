"""bgworkers as an operator runs it: ``dramatiq bgworkers`` and ``periodiq bgworkers`` processes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from bgworkers import queues
from bgworkers.db.engine import make_engine
from bgworkers.maintenance.models import SchedulerHeartbeat
from tests.platform_helpers import free_port, wait_for
from tests.service_processes import Processes, process_env, scrape

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


@pytest.fixture
def app(tmp_path: Path, rabbitmq_url: str) -> Iterator[Processes]:
    env = process_env(
        tmp_path,
        broker_url=rabbitmq_url,
        database_url=f"sqlite:///{tmp_path}/app.db",
        BGW_LOG_FORMAT="json",
    )
    subprocess.run([str(BIN / "bgworkers"), "migrate"], env=env, cwd=tmp_path, check=True)
    processes = Processes(env, tmp_path)
    yield processes
    processes.stop_all()


def test_worker_and_scheduler_processes_as_an_operator_runs_them(
    app: Processes, tmp_path: Path
) -> None:
    import bgworkers

    bgworkers.broker.flush(queues.MAINTENANCE)
    port = int(app.env["BGW_METRICS_PORT"])
    worker = app.start(
        "worker", str(BIN / "dramatiq"), "bgworkers", "--processes", "2", "--threads", "2"
    )
    scheduler = app.start("scheduler", str(BIN / "periodiq"), "bgworkers")
    engine = make_engine(app.env["BGW_DATABASE_URL"])

    def heartbeat() -> SchedulerHeartbeat | None:
        with Session(engine) as session:
            return session.get(SchedulerHeartbeat, "scheduler")

    # The scheduler ticks at the next minute boundary: at most ~60 s away.
    wait_for(
        lambda: (row := heartbeat()) is not None and row.scheduled_at is not None,
        timeout_s=100,
        what="a heartbeat enqueued by the scheduler",
    )
    scheduled_beats = heartbeat().beats  # type: ignore[union-attr]

    # Messages sent by the application (this process) are processed by the worker processes.
    from bgworkers.maintenance.actors import heartbeat as heartbeat_actor

    for _ in range(20):
        heartbeat_actor.send()
    wait_for(
        lambda: heartbeat().beats >= scheduled_beats + 20,
        timeout_s=60,  # type: ignore[union-attr]
        what="20 sent heartbeats processed",
    )
    total_beats = heartbeat().beats  # type: ignore[union-attr]

    labels = (("actor", "heartbeat"), ("queue", "maintenance"))
    wait_for(
        lambda: scrape(port).get(("bgworkers_messages_processed_total", labels)) == total_beats,
        timeout_s=20,
        what="metrics to show every processed heartbeat",
    )
    metrics = scrape(port)
    # Summed over both worker processes, each message once.
    assert metrics[("bgworkers_scheduler_heartbeats_total", ())] == total_beats
    assert metrics[("bgworkers_messages_in_progress", labels)] == 0
    assert metrics.get(("bgworkers_messages_failed_total", labels), 0) == 0
    assert metrics[("bgworkers_scheduler_heartbeat_timestamp_seconds", ())] > time.time() - 120
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200

    assert worker.poll() is None and scheduler.poll() is None
    codes = app.stop_all()
    assert codes[0] == 0  # dramatiq stopped gracefully on SIGTERM

    worker_lines = (tmp_path / "worker.out").read_text().splitlines()
    scheduler_lines = (tmp_path / "scheduler.out").read_text().splitlines()
    records = [json.loads(line) for line in worker_lines + scheduler_lines if line.strip()]
    events = [record["event"] for record in records]
    assert any("Scheduling" in event for event in events)  # the scheduler logged in JSON too
    processed = [r for r in records if r["event"] == "message_processed"]
    beats = [r for r in processed if r["actor"] == "heartbeat"]
    assert len(beats) == total_beats
    assert all(r["outcome"] == "succeeded" for r in processed)


def test_unreachable_broker_and_taken_metrics_port_are_said_plainly(app: Processes) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    app.env["BGW_METRICS_PORT"] = str(taken.getsockname()[1])
    app.env["BGW_BROKER_URL"] = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    worker = app.start("worker", str(BIN / "dramatiq"), "bgworkers", "--processes", "1")
    out = app.workdir / "worker.out"

    def events() -> list[dict[str, object]]:
        return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]

    wait_for(
        lambda: {"broker_unreachable", "metrics_port_in_use"} <= {e["event"] for e in events()},
        timeout_s=60,
        what="both warnings",
    )
    unreachable = next(e for e in events() if e["event"] == "broker_unreachable")
    assert "guest:***@" in str(unreachable["broker_url"])
    assert "BGW_BROKER_URL" in str(unreachable["hint"])
    assert worker.poll() is None  # the worker keeps trying; it does not exit
    taken.close()
