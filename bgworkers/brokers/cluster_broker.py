"""dramatiq's RabbitMQ broker with bgworkers' queue arguments and logged (re)connections.

Two things dramatiq 2.2 does not do for a cluster: declare quorum queues (its
``_build_queue_arguments``, ``_declare_queue``, ``_declare_dq_queue`` and
``_declare_xq_queue`` are overridden here with :mod:`bgworkers.brokers.queue_types`), and say which
node a connection went to. With several URLs (:mod:`bgworkers.brokers.broker_nodes`) pika tries them
in order whenever a connection is opened, and dramatiq opens a new one after every
connection error (consumers after 3 s, publishers at once), so failing over needs no code of
ours; each publishing or consuming connection is logged as ``broker_connected`` with its
node. These are private methods of dramatiq: pyproject pins dramatiq exactly.
"""

from __future__ import annotations

from typing import Any

import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.errors import ConnectionClosed

from bgworkers.brokers.broker_nodes import node_of
from bgworkers.brokers.queue_types import (
    QueueArgumentsMismatch,
    QueueType,
    dead_letter_queue_arguments,
    queue_arguments,
)
from bgworkers.logs.loggers import get_logger
from bgworkers.settings import DEFAULT_DELIVERY_LIMIT

log = get_logger("bgworkers.broker")
#: AMQP's reply code for a declaration whose arguments differ from the existing queue's.
PRECONDITION_FAILED = 406


class ClusterRabbitmqBroker(RabbitmqBroker):
    """``queue_type``: ``classic`` (dramatiq's arguments) or ``quorum``;
    ``delivery_limit``: a quorum queue's ``x-delivery-limit`` (redeliveries)."""

    def __init__(
        self,
        *,
        queue_type: QueueType = "classic",
        delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
        **kwargs: Any,
    ) -> None:
        if queue_type == "quorum" and kwargs.get("max_priority"):
            raise ValueError("quorum queues have no priorities: drop max_priority")
        super().__init__(**kwargs)
        self.queue_type: QueueType = queue_type
        self.delivery_limit = delivery_limit

    # --- declarations ----------------------------------------------------------------------

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        return queue_arguments(
            queue_name, queue_type=self.queue_type, delivery_limit=self.delivery_limit
        )

    def _declare_queue(self, queue_name: str) -> Any:
        return self._declare(queue_name, self._build_queue_arguments(queue_name))

    def _declare_dq_queue(self, queue_name: str) -> Any:
        return self._declare(dq_name(queue_name), self._build_queue_arguments(queue_name))

    def _declare_xq_queue(self, queue_name: str) -> Any:
        return self._declare(
            xq_name(queue_name), dead_letter_queue_arguments(queue_type=self.queue_type)
        )

    def _declare(self, name: str, arguments: dict[str, Any]) -> Any:
        try:
            return self.channel.queue_declare(queue=name, durable=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != PRECONDITION_FAILED:
                raise
            del self.channel  # RabbitMQ closed it; the next use opens a fresh one
            raise QueueArgumentsMismatch(
                name, queue_type=self.queue_type, broker_reply=exc.reply_text
            ) from None

    # --- connections -----------------------------------------------------------------------

    @property
    def connection(self) -> Any:
        """This thread's publishing connection (dramatiq's), logged when it is opened."""
        fresh = getattr(self.state, "connection", None) is None
        connection = RabbitmqBroker.connection.fget(self)  # type: ignore[attr-defined]
        if fresh:
            log.info("broker_connected", node=node_of(connection), purpose="publish")
        return connection

    @connection.deleter
    def connection(self) -> None:
        RabbitmqBroker.connection.fdel(self)  # type: ignore[attr-defined]

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        """dramatiq's consumer, logged with its node; a queue with other arguments is one
        error line (then dramatiq's consumer thread tries again every 3 s)."""
        try:
            consumer = super().consume(queue_name, prefetch=prefetch, timeout=timeout)
        except QueueArgumentsMismatch as exc:
            log.error("queue_arguments_mismatch", queue=exc.queue, error=str(exc))
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        log.info(
            "broker_connected",
            node=node_of(consumer.connection),  # type: ignore[attr-defined]
            purpose="consume",
            queue=queue_name,
        )
        return consumer
