"""Worker "hosts" as Linux network namespaces, each linked to this machine by a veth pair.

Host ``N`` is namespace ``bgwc-hostN`` with address ``10.240.N.2``; its link's other end,
``bgwc-hN`` on this machine, has ``10.240.N.1`` and is its default route. The cluster's
address :data:`~tests.cluster.rabbitmq_cluster.CLUSTER_ADDRESS` sits on this machine's
loopback, so every host reaches the RabbitMQ nodes (and the database relay) there, as other
machines would. :meth:`WorkerHost.cut` takes the link down: that host's TCP connections go
silent, as when a machine loses its network. Everything is removed by :func:`remove_all`,
also what an interrupted run left behind.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess

import pytest

from tests.cluster.rabbitmq_cluster import CLUSTER_ADDRESS
from tests.platform_helpers import IN_CI

PREFIX = "bgwc-"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


class WorkerHost:
    def __init__(self, index: int) -> None:
        self.index = index
        self.namespace = f"{PREFIX}host{index}"
        self.link = f"{PREFIX}h{index}"
        self.address = f"10.240.{index}.2"
        self.gateway = f"10.240.{index}.1"

    def create(self) -> None:
        peer = f"{PREFIX}n{self.index}"
        ip("netns", "add", self.namespace)
        ip("link", "add", self.link, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", self.namespace)
        ip("addr", "add", f"{self.gateway}/24", "dev", self.link)
        ip("link", "set", self.link, "up")
        inside = ("netns", "exec", self.namespace, "ip")
        ip(*inside, "addr", "add", f"{self.address}/24", "dev", peer)
        ip(*inside, "link", "set", peer, "up")
        ip(*inside, "link", "set", "lo", "up")
        ip(*inside, "route", "add", "default", "via", self.gateway)

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def cut(self) -> None:
        ip("link", "set", self.link, "down")

    def restore(self) -> None:
        ip("link", "set", self.link, "up")


def add_cluster_address() -> None:
    ip("addr", "add", f"{CLUSTER_ADDRESS}/32", "dev", "lo")


def remove_all() -> None:
    """Every namespace and link of ours, and the cluster address; quiet if absent."""
    listed = ip("netns", "list", check=False).stdout.split("\n")
    for line in listed:
        name = line.split(" ", 1)[0]
        if name.startswith(PREFIX):
            ip("netns", "del", name, check=False)
    links = ip("-o", "link", "show", check=False).stdout.splitlines()
    for line in links:
        name = line.split(":", 2)[1].strip().split("@", 1)[0] if ":" in line else ""
        if name.startswith(PREFIX):
            ip("link", "del", name, check=False)
    with contextlib.suppress(subprocess.CalledProcessError):
        if CLUSTER_ADDRESS in ip("-o", "addr", "show", "dev", "lo").stdout:
            ip("addr", "del", f"{CLUSTER_ADDRESS}/32", "dev", "lo")


def require_netns() -> None:
    """Network namespaces need root and iproute2 (Debian package iproute2)."""
    import os

    problem = None
    if shutil.which("ip") is None:
        problem = "the ip command is missing (Debian package iproute2)"
    elif os.geteuid() != 0:
        problem = "network namespaces need root"
    if problem is None:
        return
    if IN_CI:
        pytest.fail(problem)
    pytest.skip(problem)
