"""Ports for the monitoring tests' own servers, taken from fixed blocks (free ones only), so
the relays, metrics endpoints and Prometheus they start never meet other suites' ports."""

from __future__ import annotations

import socket

#: Metrics endpoints of worker groups and schedulers, and Prometheus.
METRICS_PORTS = range(9280, 9300)
#: TCP relays in front of PostgreSQL and RabbitMQ.
RELAY_PORTS = range(19280, 19300)

_taken: set[int] = set()


def port_from(block: range) -> int:
    """A port of ``block`` that nothing listens on now, preferring those not handed out yet."""
    for fresh_only in (True, False):
        for port in block:
            if fresh_only and port in _taken:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _taken.add(port)
            return port
    raise RuntimeError(f"no free port in {block.start}-{block.stop - 1}")
