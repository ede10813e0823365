"""A three-node RabbitMQ cluster of the test's own, on this machine.

Each node has its own name (``bgwcluster<N>@localhost``), AMQP port (5740 + N - 1; Erlang
distribution on port + 20000), data directory and config; all run as the ``rabbitmq`` user
and so share its Erlang cookie. Nodes 2 and 3 join node 1 with ``rabbitmqctl join_cluster``.
Each node listens on 127.0.0.1 and on :data:`CLUSTER_ADDRESS`, the address the worker
"hosts" (network namespaces, :mod:`tests.cluster.netns`) reach it at; ``guest`` may log in
from there (``loopback_users.guest = false``: these nodes are private to the test).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.outbox.rabbitmq_node import RabbitmqNode

#: Where the namespaces reach the cluster (an address of the test's own on the loopback).
CLUSTER_ADDRESS = "10.240.0.1"
FIRST_PORT = 5740


class ClusterNode(RabbitmqNode):
    def __init__(self, directory: Path, *, index: int) -> None:
        super().__init__(
            directory, name=f"bgwcluster{index}@localhost", port=FIRST_PORT + index - 1
        )
        self.index = index
        self.pid: int | None = None

    def config_text(self) -> str:
        return (
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            f"listeners.tcp.2 = {CLUSTER_ADDRESS}:{self.port}\n"
            "loopback_users.guest = false\n"
            # Quicker detection of a dead peer than the default 60 s, as in a test.
            "heartbeat = 10\n"
        )

    def address(self, host: str = CLUSTER_ADDRESS) -> str:
        """This node's AMQP URL at ``host``."""
        return f"amqp://guest:guest@{host}:{self.port}/"

    def output(self, *args: str, timeout_s: float = 60) -> str:
        return subprocess.run(
            ["rabbitmqctl", "-n", self.name, *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=self._env(),
        ).stdout

    def start(self) -> None:
        super().start()
        self.pid = int(self.output("eval", "list_to_integer(os:getpid()).").strip())

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM: a crash, not a shutdown."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while _alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            self.pid = None

    def restart_after_kill(self) -> None:
        # On the kept data directory: it rejoins its cluster.
        self.launch(startup_timeout_s=120, what="come back")
        self.pid = int(self.output("eval", "list_to_integer(os:getpid()).").strip())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): the detached VM's parent is init, which reaps it.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


class RabbitmqCluster:
    def __init__(self, directory: Path, size: int = 3) -> None:
        self.nodes = [ClusterNode(directory / f"node{i}", index=i) for i in range(1, size + 1)]

    def urls(self, host: str = CLUSTER_ADDRESS) -> str:
        return ";".join(node.address(host) for node in self.nodes)

    def start(self) -> None:
        errors: list[BaseException] = []

        def start(node: ClusterNode) -> None:
            try:
                node.start()
            except BaseException as exc:  # reported below, from the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(n,)) for n in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            self._join(node, first)
            node.ctl("start_app")
            node.wait_for_port()
        running = json.loads(first.output("cluster_status", "--formatter", "json"))
        assert len(running["running_nodes"]) == len(self.nodes), running

    @staticmethod
    def _join(node: ClusterNode, first: ClusterNode) -> None:
        """``join_cluster``, tried again for a while: a node that has just started may not
        answer Erlang distribution yet (rabbitmqctl exits 69, "unavailable")."""
        attempts = 10
        for _ in range(attempts):
            result = subprocess.run(
                ["rabbitmqctl", "-n", node.name, "join_cluster", first.name],
                capture_output=True,
                text=True,
                timeout=120,
                env=node._env(),
            )
            if result.returncode == 0:
                return
            time.sleep(2)
        raise AssertionError(
            f"{node.name} could not join {first.name} after {attempts} attempts: "
            f"{(result.stdout + result.stderr).strip()[-800:]}"
        )

    def node(self, name: str) -> ClusterNode:
        [node] = [n for n in self.nodes if n.name == name]
        return node

    def leader_of(self, queue: str, *, via: ClusterNode | None = None) -> ClusterNode:
        """The node that leads quorum queue ``queue`` now."""
        asking = via or self.nodes[0]
        rows = json.loads(
            asking.output("list_queues", "name", "type", "leader", "--formatter", "json")
        )
        [row] = [r for r in rows if r["name"] == queue]
        assert row["type"] == "quorum", row
        return self.node(row["leader"])

    def queue_types(self, *, via: ClusterNode | None = None) -> dict[str, str]:
        asking = via or self.nodes[0]
        rows = json.loads(asking.output("list_queues", "name", "type", "--formatter", "json"))
        return {r["name"]: r["type"] for r in rows}

    def shutdown(self) -> None:
        for node in self.nodes:
            node.shutdown(timeout_s=30)
            node.kill()  # whatever did not stop
