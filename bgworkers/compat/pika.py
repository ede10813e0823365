"""pika 1.4.4 beyond its public API (pinned exactly in pyproject.toml).

``BlockingChannel`` and ``BlockingConnection`` wrap an asynchronous channel and connection in
``_impl``. Why we reach through is in :data:`USES`; the names come from here only.
"""

from __future__ import annotations

from typing import Any

from bgworkers.compat import PrivateUse


def async_channel(channel: Any) -> Any:
    """The asynchronous channel inside a ``BlockingChannel``: its ``basic_ack`` queues the
    frame without running the blocking connection's I/O loop (no flush per ack)."""
    return channel._impl


def parameters_in_use(connection: Any) -> Any:
    """The ``ConnectionParameters`` a connection was opened with (which node it reached), or
    None; a ``BlockingConnection`` keeps them on the connection it wraps."""
    impl = getattr(connection, "_impl", connection)
    return getattr(impl, "params", None)


USES: tuple[PrivateUse, ...] = (
    PrivateUse(
        "pika.adapters.blocking_connection:BlockingChannel.__init__",
        used_by="bgworkers.compat.pika.async_channel (bgworkers.brokers.rabbitmq.CoalescedAcks)",
        why="acks sent on the asynchronous channel, a batch per wake-up, without the "
        "blocking channel's flush per ack",
        recheck="that BlockingChannel still keeps the asynchronous channel in self._impl and "
        "that its basic_ack(delivery_tag=...) only queues the frame",
        source_sha256="e00d833fcb040656",
    ),
    PrivateUse(
        "pika.adapters.blocking_connection:BlockingConnection.__init__",
        used_by="bgworkers.compat.pika.parameters_in_use (bgworkers.brokers.broker_nodes)",
        why="which node of a cluster a connection reached, for the connection log line",
        recheck="that BlockingConnection keeps the connection in self._impl and that one "
        "has .params",
        source_sha256="daa2465833db9c34",
    ),
)
