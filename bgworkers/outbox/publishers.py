"""How the relay hands a batch to the broker: pipelined publisher confirms on RabbitMQ.

Why pipelined confirms (on pika's ``SelectConnection``) and not one confirm at a time or an
AMQP transaction per batch: docs/outbox.md, with the figures of ``bench/fanout.py``. A
publisher raises :class:`PublishError` when the batch is not known to be delivered; the relay
then keeps the rows and retries them.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dramatiq
import pika
import pika.exceptions
from dramatiq.common import current_millis, dq_name
from pika.spec import Basic

from bgworkers.brokers.broker_nodes import connection_parameters, describe_parameters
from bgworkers.errors import TransientError
from bgworkers.logs.loggers import get_logger

log = get_logger("bgworkers.outbox")


class PublishError(TransientError):
    """The broker did not take the batch (connection, channel or routing problem)."""


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: the stored envelope, and its ``eta`` if still in the future."""

    queue: str
    message_id: str
    body: bytes
    eta_ms: int | None = None  # Unix milliseconds; None: due now


class Publisher(Protocol):
    def publish(self, batch: Sequence[Outgoing]) -> None:
        """Deliver the whole batch or raise :class:`PublishError`."""

    def close(self) -> None: ...


def delayed_envelope(item: Outgoing) -> tuple[str, bytes]:
    """Routing key and body of a delayed message, as dramatiq's own ``enqueue`` makes them."""
    if item.eta_ms is None:
        return item.queue, item.body
    fields = json.loads(item.body)
    fields["queue_name"] = dq_name(item.queue)
    fields["options"] = {**fields.get("options", {}), "eta": item.eta_ms}
    return fields["queue_name"], json.dumps(fields, separators=(",", ":")).encode()


class QueueDeclarations:
    """Declares each queue a batch names before its first publish, once (until forgotten).

    ``declare(queue)`` is the broker's ``declare_queue`` (the queue with its ``.DQ``/``.XQ``);
    :meth:`forget` after an unroutable message, since a queue may have been deleted.
    """

    def __init__(self, declare: Callable[[str], None]) -> None:
        self._declare = declare
        self._declared: set[str] = set()

    def ensure(self, batch: Sequence[Outgoing]) -> None:
        for queue in {item.queue for item in batch} - self._declared:
            self._declare(queue)
            self._declared.add(queue)

    def forget(self) -> None:
        self._declared.clear()


class RabbitmqConfirmPublisher:
    """Publishes each batch on one long-lived channel with pipelined publisher confirms.

    Every message of the batch is written at once; the call then waits (at most
    ``timeout_s`` seconds) until RabbitMQ has confirmed them all. ``declare(queue)`` makes
    sure a queue and its ``.DQ``/``.XQ`` exist with dramatiq's arguments before the first
    publish to it (the broker's ``declare_queue``); a message RabbitMQ cannot route comes
    back, and the batch fails. Connection options (heartbeat, timeouts) come from the URL's
    query, as for the broker. Not thread-safe: one relay thread owns it.
    """

    def __init__(
        self,
        url: str,
        *,
        declare: Callable[[str], None],
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        # Several ;-separated URLs: the nodes of a cluster, tried in turn from the last one
        # that worked (see _open).
        self._nodes = connection_parameters(
            url, socket_timeout=connect_timeout_s, connection_attempts=1
        )
        self._node = 0
        self._logged_node: str | None = None
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        # Heartbeats are only answered while a batch is in flight: reconnect after a pause
        # shorter than the heartbeat, rather than find the connection closed by RabbitMQ.
        heartbeat = self._nodes[0].heartbeat
        self._max_idle_s = min(20.0, heartbeat / 2) if heartbeat else 20.0
        self._queues = QueueDeclarations(declare)
        self._connection: pika.SelectConnection | None = None
        self._channel: Any = None
        self._error: str | None = None
        self._waiting: Callable[[], bool] = lambda: True
        self._tag = 0
        self._unconfirmed: set[int] = set()
        self._refused = 0
        self._last_used = 0.0

    # --- driving the I/O loop ----------------------------------------------------------

    def _run_until(self, done: Callable[[], bool], timeout_s: float) -> None:
        connection = self._connection
        if connection is None or done() or self._error:
            return
        self._waiting = done
        timer = connection.ioloop.call_later(timeout_s, connection.ioloop.stop)
        connection.ioloop.start()
        connection.ioloop.remove_timeout(timer)

    def _check_done(self) -> None:
        if self._connection is not None and (self._error or self._waiting()):
            self._connection.ioloop.stop()

    # --- callbacks ---------------------------------------------------------------------

    def _on_open(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: Any) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(self._on_confirm, callback=lambda _: self._ready(channel))

    def _ready(self, channel: Any) -> None:
        self._channel = channel
        self._check_done()

    def _on_open_error(self, _connection: Any, error: BaseException | str) -> None:
        self._error = f"cannot connect: {error}"
        self._check_done()

    def _on_closed(self, _connection: Any, reason: BaseException) -> None:
        self._error = self._error or f"connection closed: {reason}"
        self._channel = None
        if self._connection is not None:
            self._connection.ioloop.stop()

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        self._error = self._error or f"channel closed: {reason}"
        self._channel = None
        self._check_done()

    def _on_return(self, _channel: Any, _method: Any, _properties: Any, _body: bytes) -> None:
        self._refused += 1

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        confirmed = {t for t in self._unconfirmed if t <= tag} if method.multiple else {tag}
        self._unconfirmed -= confirmed
        if isinstance(method, Basic.Nack):
            self._refused += len(confirmed)
        self._check_done()

    # --- API ---------------------------------------------------------------------------

    def _open(self) -> Any:
        idle_s = time.monotonic() - self._last_used
        if self._channel is not None and not self._error and idle_s < self._max_idle_s:
            return self._channel
        errors = []
        for _ in self._nodes:
            params = self._nodes[self._node]
            node = describe_parameters(params)
            self.close()
            self._error, self._tag = None, 0
            self._connection = pika.SelectConnection(
                params,
                on_open_callback=self._on_open,
                on_open_error_callback=self._on_open_error,
                on_close_callback=self._on_closed,
            )
            self._run_until(lambda: self._channel is not None, self._connect_timeout_s)
            if self._channel is not None:
                if node != self._logged_node:  # the first connection, or another node now
                    log.info("broker_connected", node=node, purpose="outbox_relay")
                    self._logged_node = node
                return self._channel
            error = self._error or f"no channel within {self._connect_timeout_s:g} s"
            errors.append(f"{node}: {error}")
            self.close()
            self._node = (self._node + 1) % len(self._nodes)
        raise PublishError("; ".join(errors))

    def publish(self, batch: Sequence[Outgoing]) -> None:
        try:
            self._queues.ensure(batch)
            channel = self._open()
            self._refused = 0
            self._unconfirmed.clear()
            # The timestamp (seconds) lets RabbitMQ report how long a queue's head has waited.
            properties = pika.BasicProperties(delivery_mode=2, timestamp=int(time.time()))
            for item in batch:
                routing_key, body = delayed_envelope(item)
                channel.basic_publish("", routing_key, body, properties, mandatory=True)
                self._tag += 1
                self._unconfirmed.add(self._tag)
            self._run_until(lambda: not self._unconfirmed, self._timeout_s)
        except (pika.exceptions.AMQPError, OSError, dramatiq.errors.BrokerConnectionError) as exc:
            self.close()
            raise PublishError(f"publish failed: {type(exc).__name__}: {exc}") from exc
        self._last_used = time.monotonic()
        if self._error or self._unconfirmed:
            unconfirmed = len(self._unconfirmed)
            error = self._error or f"{unconfirmed} not confirmed within {self._timeout_s:g} s"
            self.close()
            raise PublishError(error)
        if self._refused:
            self._queues.forget()  # a queue was deleted, perhaps: declare again next time
            raise PublishError(f"RabbitMQ refused or could not route {self._refused} message(s)")

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is None:
            return
        if connection.is_open:
            self._connection = connection  # so the close callback can stop the loop
            # Already broken: nothing to release on our side.
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()
                self._run_until(lambda: connection.is_closed, 2.0)
            self._connection = None
        self._error = None


class BrokerPublisher:
    """Publishes through any dramatiq broker's ``enqueue``, one message at a time: for brokers
    other than RabbitMQ (the stub broker of the tests), with the broker's own delays."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self._broker = broker

    def publish(self, batch: Sequence[Outgoing]) -> None:
        for item in batch:
            message = dramatiq.Message.decode(item.body)
            delay = None if item.eta_ms is None else max(item.eta_ms - current_millis(), 0)
            try:
                self._broker.enqueue(message, delay=delay)
            except dramatiq.errors.BrokerConnectionError as exc:
                raise PublishError(f"publish failed: {exc}") from exc

    def close(self) -> None:
        return None
