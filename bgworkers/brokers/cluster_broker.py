"""dramatiq's RabbitMQ broker with bgworkers' queue arguments and logged (re)connections.

Two things dramatiq 2.2 does not do for a cluster: declare quorum queues, and say which node a
connection went to. ``BGW_QUEUE_TYPE`` picks classic queues (exactly dramatiq's arguments, so
existing queues keep matching) or quorum queues (replicated over the cluster's nodes) for
``<q>``, ``<q>.DQ`` and ``<q>.XQ`` alike; docs/scaling.md ("Queue types") says why each
argument is set, and why the XQ has no delivery limit. dramatiq's ``_build_queue_arguments``,
``_declare_queue``, ``_declare_dq_queue`` and ``_declare_xq_queue`` are overridden here: these
are private methods of dramatiq, and pyproject pins dramatiq exactly.

With several URLs (:mod:`bgworkers.brokers.broker_nodes`) pika tries them in order whenever a
connection is opened, and dramatiq opens a new one after every connection error (consumers
after 3 s, publishers at once), so failing over needs no code of ours; each publishing or
consuming connection is logged as ``broker_connected`` with its node.

RabbitMQ answers a declaration with other arguments with ``PRECONDITION_FAILED`` and closes
the channel; :func:`mismatch_message` turns that into one line naming the queue and the way out.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import pika.exceptions
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.errors import ConnectionClosed

from bgworkers.brokers.broker_nodes import node_of
from bgworkers.errors import ConfigurationError
from bgworkers.logs.loggers import get_logger
from bgworkers.settings import DEFAULT_DELIVERY_LIMIT

log = get_logger("bgworkers.broker")
#: AMQP's reply code for a declaration whose arguments differ from the existing queue's.
PRECONDITION_FAILED = 406
QueueType = Literal["classic", "quorum"]
MIGRATION_DOC = "docs/scaling.md, 'Changing the queue type'"


def queue_arguments(
    queue_name: str, *, queue_type: QueueType, delivery_limit: int
) -> dict[str, Any]:
    """Arguments of ``q`` and ``q.DQ`` (both dead-letter to ``q.XQ``); ``delivery_limit`` is
    ``BGW_QUEUE_DELIVERY_LIMIT``, redeliveries before a quorum queue dead-letters a message."""
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": xq_name(queue_name),
    }
    if queue_type == "quorum":
        arguments.update(
            {
                "x-queue-type": "quorum",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
                "x-delivery-limit": delivery_limit,
            }
        )
    return arguments


def dead_letter_queue_arguments(*, queue_type: QueueType) -> dict[str, Any]:
    """Arguments of ``q.XQ``: dramatiq's message TTL (a static value: messages expire from
    the head of the queue in order)."""
    arguments: dict[str, Any] = {"x-message-ttl": DEAD_MESSAGE_TTL}
    if queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
    return arguments


class QueueArgumentsMismatch(ConfigurationError):
    """A queue exists with other arguments (another type, another delivery limit)."""

    def __init__(self, queue: str, *, queue_type: QueueType, broker_reply: str) -> None:
        super().__init__(mismatch_message(queue, queue_type=queue_type, broker_reply=broker_reply))
        self.queue = queue


_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for queue '[^']*' in vhost '(?P<vhost>[^']*)': "
    r"received (?P<received>.+?) but current is (?P<current>.+)$"
)


#: Arguments bgworkers sets on quorum queues only: a mismatch on one of them is a type mismatch.
_QUORUM_ONLY = frozenset({"x-queue-type", "x-dead-letter-strategy", "x-overflow"})


def mismatch_message(queue: str, *, queue_type: QueueType, broker_reply: str) -> str:
    """One line: which queue, what it is, which argument differs, and the way out."""
    match = _INEQUIVALENT.search(broker_reply)
    kind = "with other arguments"
    if match is None:
        detail = broker_reply.removeprefix("PRECONDITION_FAILED - ")[:200]
        where = ""
    else:
        current, received = _short(match["current"]), _short(match["received"])
        detail = f"{match['arg']} is {current} there, bgworkers declares {received}"
        where = f" in vhost {match['vhost']!r}"
        if match["arg"] in _QUORUM_ONLY:
            if queue_type == "quorum" and current == "unset":
                kind = "as a classic queue"
            elif queue_type == "classic" and received == "unset":
                kind = "as a quorum queue"
    return (
        f"queue {queue!r}{where} already exists {kind} ({detail}); "
        f"RabbitMQ cannot change a queue's type or arguments, and BGW_QUEUE_TYPE is "
        f"{queue_type!r}: move to new queues and drain the old ones as {MIGRATION_DOC} "
        "describes, or set BGW_QUEUE_TYPE back to what the queues are"
    )


def _short(value: str) -> str:
    """``the value 'quorum' of type 'longstr'`` -> ``'quorum'``; ``none`` -> ``unset``."""
    value = value.strip()
    if value == "none":
        return "unset"
    quoted = re.match(r"(?:the value )?('[^']*')", value)
    return quoted.group(1) if quoted else value[:40]


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
