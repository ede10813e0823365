"""A worker group started while its PostgreSQL is away waits for it, then works.

The worker reaches PostgreSQL through a TCP relay of the test's own, which listens only once
the test "starts the database": before that, every connection is refused, as from a stopped
server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers.maintenance.models import SchedulerHeartbeat
from tests.integration.tcp_relay import TcpRelay
from tests.platform_helpers import free_port, wait_for

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


@pytest.fixture
def relay(postgres_engine: Engine) -> Iterator[TcpRelay]:
    url = postgres_engine.url
    relay = TcpRelay((url.host or "127.0.0.1", url.port or 5432))
    yield relay
    relay.close()


def beats(engine: Engine) -> int:
    with Session(engine) as session:
        row = session.get(SchedulerHeartbeat, "scheduler")
        return row.beats if row else 0


def test_a_worker_group_started_without_its_database_waits_then_works(
    tmp_path: Path, rabbitmq_url: str, postgres_engine: Engine, relay: TcpRelay
) -> None:
    from bgworkers.maintenance.actors import heartbeat

    port = free_port()
    proxied = postgres_engine.url.set(host="127.0.0.1", port=relay.port)
    env = {
        **os.environ,
        "BGW_BROKER_URL": rabbitmq_url,
        "BGW_DATABASE_URL": proxied.render_as_string(hide_password=False),
        "BGW_DATA_DIR": str(tmp_path),
        "BGW_METRICS_PORT": str(port),
        "BGW_LOG_FORMAT": "json",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    out = tmp_path / "worker.out"
    with out.open("wb") as log:
        worker = subprocess.Popen(
            [str(BIN / "dramatiq"), "bgworkers", "-p", "1", "-t", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: status(f"{base}/healthz") == 200, timeout_s=60, what="/healthz 200")
        wait_for(lambda: status(f"{base}/readyz") == 503, timeout_s=30, what="/readyz 503")
        wait_for(lambda: b"database_unreachable" in out.read_bytes(), what="one line saying so")
        assert worker.poll() is None, out.read_text()
        heartbeat.send()
        assert beats(postgres_engine) == 0  # nothing runs while the database is away

        relay.open()  # the database is back
        wait_for(lambda: beats(postgres_engine) == 1, timeout_s=60, what="the message processed")
        wait_for(lambda: status(f"{base}/readyz") == 200, timeout_s=30, what="/readyz 200")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    text = out.read_text()
    assert text.count('"event":"database_unreachable"') == 1, text
    assert '"event":"database_reachable"' in text
    assert "Traceback" not in text, text
