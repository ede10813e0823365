"""Readiness against services that hang: a relay of the test's own stops forwarding.

A real worker group (``dramatiq bgworkers``) and a real scheduler (``periodiq bgworkers``)
reach PostgreSQL and RabbitMQ through :class:`TcpRelay`. When the relay black-holes
one service (connections open, nothing answers), both ``/readyz`` must turn 503 within a few
seconds, naming the check; when it forwards again, 200. ``bgworkers health`` against the
black-holed services must end within its deadlines and print no log line or traceback before
its report. Times are printed, not asserted beyond "a few seconds" (CI machines vary).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy.engine import Engine

from tests.monitoring.ports import METRICS_PORTS, RELAY_PORTS, port_from
from tests.platform_helpers import wait_for
from tests.service_processes import Stack
from tests.tcp_relay import TcpRelay

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
#: What "within a few seconds" means here: the checks' interval (3 s) plus their deadline (2 s),
#: with room for a loaded CI machine.
TURN_S = 20.0


def readyz(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
    except OSError:
        return 0, {}


def through(relay: TcpRelay, url: str) -> str:
    parsed = urlparse(url)
    netloc = parsed.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{relay.port}"
    return parsed._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()


def test_readyz_turns_503_while_database_or_broker_hang_and_200_after(
    tmp_path: Path, rabbitmq_url: str, postgres_engine: Engine
) -> None:
    """Black-holes PostgreSQL, then RabbitMQ; prints how long each turn took."""
    # The fixture's URL names its migrated schema (libpq's options).
    postgres_url = postgres_engine.url.render_as_string(hide_password=False)
    pg_address = urlparse(postgres_url.replace("+psycopg", ""))
    mq_address = urlparse(rabbitmq_url)
    pg = TcpRelay(
        (pg_address.hostname or "127.0.0.1", pg_address.port or 5432), port=port_from(RELAY_PORTS)
    ).start()
    mq = TcpRelay(
        (mq_address.hostname or "127.0.0.1", mq_address.port or 5672), port=port_from(RELAY_PORTS)
    ).start()
    database_url = through(pg, postgres_url)
    worker_port, scheduler_port = port_from(METRICS_PORTS), port_from(METRICS_PORTS)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BGW_BROKER_URL": through(mq, rabbitmq_url),
        "BGW_DATABASE_URL": database_url,
        "BGW_METRICS_DIR": str(tmp_path / "metrics"),
        "BGW_METRICS_PORT": str(worker_port),
        "BGW_SCHEDULER_METRICS_PORT": str(scheduler_port),
        "BGW_RABBITMQ_MANAGEMENT_URL": "off",
        "BGW_LOG_FORMAT": "json",
        "TZ": "UTC",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run([str(BIN / "bgworkers"), "migrate"], env=env, check=True, capture_output=True)
    stack = Stack(tmp_path)
    try:
        stack.start("worker", [str(BIN / "dramatiq"), "bgworkers", "-p", "1", "-t", "1"], env)
        stack.start("scheduler", [str(BIN / "periodiq"), "bgworkers"], env)
        ports = {"worker group": worker_port, "scheduler": scheduler_port}

        def all_ready() -> bool:
            return all(readyz(port)[0] == 200 for port in ports.values())

        wait_for(all_ready, timeout_s=60, what="both processes to be ready")
        for relay, check in ((pg, "database"), (mq, "rabbitmq")):
            relay.black_hole()
            started = time.monotonic()
            for name, port in ports.items():
                wait_for(
                    lambda port=port: readyz(port)[0] == 503,
                    timeout_s=TURN_S,
                    what=f"{name} /readyz to turn 503 with {check} black-holed",
                )
                _, body = readyz(port)
                assert body["checks"][check]["ok"] is False, body  # type: ignore[index]
                print(f"{name}: 503 {time.monotonic() - started:.1f} s after {check} hung")
            health_started = time.monotonic()
            health = subprocess.run(
                [str(BIN / "bgworkers"), "health"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            took = time.monotonic() - health_started
            print(
                f"bgworkers health with {check} black-holed: {took:.1f} s, exit {health.returncode}"
            )
            assert health.returncode == 1
            assert health.stdout.startswith("rabbitmq "), health.stdout
            assert f"{check:<12} FAILING  no answer within 2 s" in health.stdout, health.stdout
            assert health.stderr == "", health.stderr
            relay.restore()
            restored = time.monotonic()
            wait_for(all_ready, timeout_s=TURN_S * 2, what=f"200 again once {check} answers")
            print(f"both 200 again {time.monotonic() - restored:.1f} s after {check} answered")
    finally:
        stack.stop()
        pg.stop()
        mq.stop()
