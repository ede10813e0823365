"""A RabbitMQ node of the test's own (own name, ports and data dir), for outage tests.

The shared node on 5672 is never touched: this one listens on ``port`` (127.0.0.1 only),
uses ``port + 20000`` for Erlang distribution, has no plugins, and keeps its data under the
given directory. ``stop_app``/``start_app`` make the broker unreachable and back without
losing its queues; ``shutdown`` ends the node. Give it a directory outside pytest's base
temp: pytest sessions of the same user delete old base temps while the node may still run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform_helpers import IN_CI


class RabbitmqNode:
    def __init__(self, directory: Path, *, name: str, port: int) -> None:
        self.directory = directory
        self.name = name
        self.port = port
        self.url = f"amqp://guest:guest@127.0.0.1:{port}/"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.port + 20_000),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq"),
        }

    def config_text(self) -> str:
        """The node's ``rabbitmq.conf``."""
        return f"listeners.tcp.local = 127.0.0.1:{self.port}\n"

    def ctl(self, *args: str, timeout_s: float = 120) -> None:
        subprocess.run(
            ["rabbitmqctl", "-n", self.name, *args],
            check=True,
            capture_output=True,
            timeout=timeout_s,
            env=self._env(),
        )

    def start(self) -> None:
        self.shutdown(timeout_s=20)  # a node of this name left by an interrupted run
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "rabbitmq.conf").write_text(self.config_text())
        if os.geteuid() == 0:  # the server drops to the rabbitmq user: let it in
            for path in [self.directory, *self.directory.rglob("*")]:
                shutil.chown(path, "rabbitmq", "rabbitmq")
            for parent in self.directory.parents:
                if parent == Path(tempfile.gettempdir()):
                    break
                parent.chmod(parent.stat().st_mode | stat.S_IXOTH)  # traverse only
        self.launch(startup_timeout_s=60)

    def launch(self, *, startup_timeout_s: float, what: str = "start") -> None:
        """``rabbitmq-server -detached`` on this node's data directory; wait until it serves."""
        subprocess.run(
            ["rabbitmq-server", "-detached"], check=True, env=self._env(), capture_output=True
        )
        deadline = time.monotonic() + 60
        while subprocess.run(
            ["rabbitmq-diagnostics", "-n", self.name, "-q", "ping"],
            capture_output=True,
            env=self._env(),
        ).returncode:
            if time.monotonic() > deadline:
                raise AssertionError(f"RabbitMQ node {self.name} did not {what}")
            time.sleep(0.5)
        self.ctl("await_startup", timeout_s=startup_timeout_s)
        self.wait_for_port()

    def wait_for_port(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"port {self.port} does not answer") from None
                time.sleep(0.2)

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.wait_for_port()

    def shutdown(self, *, timeout_s: float = 60) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                ["rabbitmqctl", "-n", self.name, "shutdown"],
                capture_output=True,
                timeout=timeout_s,
                env=self._env(),
            )


def require_rabbitmq_server() -> None:
    if shutil.which("rabbitmq-server") and shutil.which("rabbitmqctl"):
        return
    message = "rabbitmq-server is not installed (Debian package rabbitmq-server)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def private_node(prefix: str, *, name: str, port: int) -> Iterator[RabbitmqNode]:
    """A started node of the test's own, shut down and its data removed afterwards.

    Not under pytest's base temp: other pytest sessions of the same user on this host delete
    old base temps, and with them a running node's data directory.
    """
    require_rabbitmq_server()
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    own = RabbitmqNode(directory / "rabbitmq", name=name, port=port)
    try:
        own.start()
        yield own
    finally:
        own.shutdown()
        shutil.rmtree(directory, ignore_errors=True)
