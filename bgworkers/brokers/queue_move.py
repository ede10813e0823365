"""``bgworkers move-queues --from URL``: the last step of changing the queue type.

What is left in the old vhost's ``<q>``, ``<q>.DQ`` and ``<q>.XQ`` is published unchanged to
the configured broker's queue of the same name (docs/scaling.md, "Changing the queue type").
Each message is acknowledged in the old queue only after RabbitMQ confirmed its copy: a
crash in between leaves a duplicate (absorbed by idempotent actors), never a loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import dq_name, xq_name

from bgworkers import queues
from bgworkers.brokers.broker_nodes import open_blocking_connection

#: What dramatiq sets on its messages (delivery mode 2: written to disk).
PERSISTENT = pika.BasicProperties(delivery_mode=2)


@dataclass(frozen=True)
class Moved:
    queue: str
    messages: int


def move_queues(
    from_url: str, broker: RabbitmqBroker, *, report: Callable[[Moved], None] = lambda _: None
) -> list[Moved]:
    """Move every message of bgworkers' queues at ``from_url`` to ``broker``'s queues."""
    source = open_blocking_connection(from_url, socket_timeout=10)
    moved = []
    try:
        for queue in queues.ALL:
            broker.declare_queue(queue, ensure=True)
        target = broker.connection.channel()
        target.confirm_delivery()
        for queue in queues.ALL:
            for name in (queue, dq_name(queue), xq_name(queue)):
                result = Moved(name, _move_one(source, target, name))
                report(result)
                moved.append(result)
        target.close()
    finally:
        source.close()
        del broker.connection
    return moved


def _move_one(source: pika.BlockingConnection, target: object, name: str) -> int:
    channel = source.channel()
    try:
        channel.queue_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker:
        return 0  # the old vhost never had this queue
    count = 0
    while True:
        method, properties, body = channel.basic_get(name, auto_ack=False)
        if method is None:
            break
        # Confirmed (or raising) before the old copy goes: a duplicate at worst, never a loss.
        target.basic_publish(  # type: ignore[attr-defined]
            "", name, body, properties or PERSISTENT, mandatory=True
        )
        channel.basic_ack(method.delivery_tag)
        count += 1
    channel.close()
    return count
