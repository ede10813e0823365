"""A quick "does RabbitMQ answer?" check, shared by the runner and the health command."""

from __future__ import annotations

import socket
from urllib.parse import urlparse


def broker_answers(url: str, *, timeout_s: float = 3.0) -> bool:
    """True when something accepts TCP connections at the broker URL's host and port."""
    first = url.split(";", 1)[0]
    parsed = urlparse(first)
    port = parsed.port or (5671 if parsed.scheme == "amqps" else 5672)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", port), timeout_s):
            return True
    except OSError:
        return False
