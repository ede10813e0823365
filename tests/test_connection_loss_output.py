"""A broker connection reset under a running worker: one WARNING naming the node and the
reason, no traceback, and the worker goes on.

A real ``dramatiq bgworkers`` process reaches the real RabbitMQ through a TCP relay of this
test; cutting the relay's connections with a TCP reset is what a node restart or a middlebox
does to a worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bgworkers import migrations
from bgworkers.db.engine import make_engine
from bgworkers.settings import get_settings
from tests.platform_helpers import free_port, stop_process, wait_for
from tests.tcp_relay import TcpRelay

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def test_a_reset_connection_is_one_warning_with_the_node_and_the_reason(tmp_path: Path) -> None:
    url = urlsplit(get_settings().broker_url.get_secret_value())
    relay = TcpRelay((url.hostname or "127.0.0.1", url.port or 5672)).start()
    relayed = url._replace(netloc=f"{url.username}:{url.password}@127.0.0.1:{relay.port}")
    engine = make_engine(f"sqlite:///{tmp_path}/bgworkers.db")
    migrations.upgrade(engine)
    engine.dispose()
    env = {
        **os.environ,
        "BGW_DATA_DIR": str(tmp_path),
        "BGW_BROKER_URL": urlunsplit(relayed),
        "BGW_METRICS_PORT": str(free_port()),
        "BGW_LOG_FORMAT": "json",
    }
    out = tmp_path / "out.log"
    argv = [str(BIN / "dramatiq"), "bgworkers", "--processes", "1", "--threads", "1"]
    with out.open("wb") as sink:
        process = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=sink, stderr=sink)
        try:
            wait_for(lambda: "broker_connected" in out.read_text(), timeout_s=120, what="start")
            wait_for(lambda: relay.connections() >= 2, what="the consumers' connections")
            connected = out.read_text().count("broker_connected")
            assert relay.cut() >= 1
            wait_for(
                lambda: out.read_text().count("broker_connected") > connected,
                timeout_s=60,
                what="the worker to connect again",
            )
            assert process.poll() is None  # dramatiq reconnected: the worker did not exit
        finally:
            stop_process(process)
            relay.stop()
    lines = out.read_text().splitlines()
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    lost = [e for e in logged if "RabbitMQ connection to" in str(e.get("event", ""))]
    assert len(lost) == 1, "\n".join(lines)  # pika's three lines about it are one
    [entry] = lost
    assert entry["level"] == "warning", entry
    assert f"RabbitMQ connection to 127.0.0.1:{relay.port} lost (" in str(entry["event"])
    assert "Connection reset by peer" in str(entry["event"])
    assert str(url.password) not in json.dumps(entry)
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)
