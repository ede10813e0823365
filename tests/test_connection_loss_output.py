"""A broker connection reset under a running worker: one WARNING naming the node and the
reason, no traceback, and the worker goes on.

A real ``dramatiq bgworkers`` process reaches the real RabbitMQ through a TCP relay of this
test; cutting the relay's connections with a TCP reset is what a node restart or a middlebox
does to a worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bgworkers import migrations
from bgworkers.db.engine import make_engine
from bgworkers.settings import get_settings
from tests.platform_helpers import free_port, wait_for

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


class CuttableRelay:
    """Forwards TCP connections from a local port to ``target``; :meth:`cut` resets them."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.clients: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed by stop()
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self.clients.append(client)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def cut(self) -> int:
        """Reset every relayed connection (RST, not FIN); return how many."""
        with self._lock:
            clients, self.clients = self.clients, []
        for client in clients:
            with contextlib.suppress(OSError):  # already closed by its pump: nothing to reset
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
        return len(clients)

    def connections(self) -> int:
        with self._lock:
            return len(self.clients)

    def stop(self) -> None:
        self.listener.close()
        self.cut()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:  # the other side was reset or closed: this direction ends too
        pass
    for end in (source, sink):
        with contextlib.suppress(OSError):
            end.close()


def test_a_reset_connection_is_one_warning_with_the_node_and_the_reason(tmp_path: Path) -> None:
    url = urlsplit(get_settings().broker_url.get_secret_value())
    relay = CuttableRelay((url.hostname or "127.0.0.1", url.port or 5672))
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
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
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
