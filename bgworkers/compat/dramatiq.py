"""dramatiq 2.2.1 beyond its public API (pinned exactly in pyproject.toml).

dramatiq extends its RabbitMQ broker through ``consumer_class`` (a public property we
override), but the consumer and message classes it returns are private, and so are the methods
that declare queues. Why each is used is in :data:`USES`; the names come from here only.
"""

from __future__ import annotations

from typing import Any

from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import _RabbitmqConsumer, _RabbitmqMessage
from dramatiq.message import Message

from bgworkers.compat import PrivateUse

RabbitmqConsumer = _RabbitmqConsumer
RabbitmqMessage = _RabbitmqMessage


def message_of(proxy: MessageProxy) -> Message[Any]:
    """The message inside a proxy (dramatiq keeps it in ``_message``)."""
    return proxy._message


def delivery_tag(proxy: Any) -> int:
    """The RabbitMQ delivery tag of a consumed message (``_RabbitmqMessage._tag``)."""
    return proxy._tag  # type: ignore[no-any-return]


def nack_tag(consumer: Any, tag: int) -> None:
    """Nack one delivery by tag, without requeue (RabbitMQ dead-letters it to ``.XQ``)."""
    consumer._nack(tag)


_RMQ = "dramatiq.brokers.rabbitmq"
USES: tuple[PrivateUse, ...] = (
    PrivateUse(
        f"{_RMQ}:_RabbitmqConsumer",
        used_by="bgworkers.brokers.rabbitmq._ScreeningConsumer",
        why="the consumer that consumer_class must return; we keep its connection set-up, "
        "nack and close, and rely on its connection, channel, iterator and known_tags",
        recheck="that _RabbitmqConsumer.__init__ still sets connection, channel, iterator, "
        "known_tags and logger",
        signature="(broker, queue_name, prefetch, timeout)",
    ),
    PrivateUse(
        f"{_RMQ}:_RabbitmqConsumer.__next__",
        used_by="bgworkers.brokers.rabbitmq._ScreeningConsumer.__next__",
        why="replaced, to screen every body before dramatiq decodes it (a decoder cannot: it "
        "knows neither the queue nor the actors); its connection-error handling is copied",
        recheck="diff dramatiq's __next__ with ours and carry any fix over (error handling, "
        "queues_pending, known_tags)",
        source_sha256="75ac0236fc2754b8",
    ),
    PrivateUse(
        f"{_RMQ}:_RabbitmqConsumer.ack",
        used_by="bgworkers.brokers.rabbitmq.CoalescedAcks.ack",
        why="replaced, to send acks in batches without a flush each (see CoalescedAcks)",
        recheck="diff dramatiq's ack with ours (known_tags, the errors it maps)",
        source_sha256="43b0f4c20080bed0",
    ),
    PrivateUse(
        f"{_RMQ}:_RabbitmqConsumer._nack",
        used_by="bgworkers.compat.dramatiq.nack_tag",
        why="nacks a refused delivery by tag (no message proxy exists for it)",
        recheck="that _nack(tag) still nacks without requeue from any thread",
        signature="(self, tag)",
    ),
    PrivateUse(
        f"{_RMQ}:_RabbitmqMessage",
        used_by="bgworkers.brokers.rabbitmq._BoundedMessage",
        why="the proxy dramatiq's consumer returns; subclassed for a bounded str",
        recheck="the constructor's arguments and that it stores the tag in _tag",
        signature="(redelivered, tag, message)",
    ),
    PrivateUse(
        f"{_RMQ}:_RabbitmqMessage._tag",
        used_by="bgworkers.compat.dramatiq.delivery_tag",
        why="the delivery tag a batched ack sends",
        recheck="that _RabbitmqMessage.__init__ still sets self._tag",
        instance_attribute=True,
    ),
    PrivateUse(
        "dramatiq.broker:MessageProxy.__init__",
        used_by="bgworkers.compat.dramatiq.message_of",
        why="a bounded str reads the message's args without going through the proxy",
        recheck="that MessageProxy.__init__ still keeps the message in self._message",
        source_sha256="44448f8c777cb8f3",
    ),
    PrivateUse(
        f"{_RMQ}:RabbitmqBroker._build_queue_arguments",
        used_by="bgworkers.brokers.cluster_broker.ClusterRabbitmqBroker",
        why="overridden: quorum queues and a delivery limit (dramatiq has no queue-type "
        "option; upstream issue Bogdanp/dramatiq#657 on custom queue arguments is open)",
        recheck="that the queues are still declared through this method; a rename would "
        "silently give classic queues on a fresh vhost",
        signature="(self, queue_name)",
        source_sha256="7551172b30346a65",
    ),
    PrivateUse(
        f"{_RMQ}:RabbitmqBroker._declare_queue",
        used_by="bgworkers.brokers.cluster_broker.ClusterRabbitmqBroker",
        why="overridden: the main queue declared with our arguments",
        recheck="that declare_queue still calls it",
        signature="(self, queue_name)",
        source_sha256="9ebebb7082f01042",
    ),
    PrivateUse(
        f"{_RMQ}:RabbitmqBroker._declare_dq_queue",
        used_by="bgworkers.brokers.cluster_broker.ClusterRabbitmqBroker",
        why="overridden: the delay queue declared with our arguments",
        recheck="that declare_queue still calls it",
        signature="(self, queue_name)",
        source_sha256="8771e365f249ab5d",
    ),
    PrivateUse(
        f"{_RMQ}:RabbitmqBroker._declare_xq_queue",
        used_by="bgworkers.brokers.cluster_broker.ClusterRabbitmqBroker",
        why="overridden: the dead-letter queue declared with our arguments (and its TTL)",
        recheck="that declare_queue still calls it, and the TTL it sets",
        signature="(self, queue_name)",
        source_sha256="435cb6fafa76ca3d",
    ),
    PrivateUse(
        f"{_RMQ}:RabbitmqBroker._ensure_queue",
        used_by="bgworkers.brokers.rabbitmq._ScreeningConsumer.__next__ (queues_pending)",
        why="a deleted queue is put back in queues_pending, which this method re-declares",
        recheck="that queues_pending is still what makes a queue be declared again",
        source_sha256="a426736d97259fa3",
    ),
    PrivateUse(
        "dramatiq.broker:Broker.emit_before",
        used_by="bgworkers.brokers.rabbitmq.SelectiveHooks",
        why="public, but replaced: hooks are called only on the middleware that define them",
        recheck="diff dramatiq's emit_before with ours (the SkipMessage handling)",
        source_sha256="583dfd2a7233ae1a",
    ),
    PrivateUse(
        "dramatiq.broker:Broker.emit_after",
        used_by="bgworkers.brokers.rabbitmq.SelectiveHooks",
        why="public, but replaced: hooks are called only on the middleware that define them",
        recheck="diff dramatiq's emit_after with ours (reverse order, errors logged)",
        source_sha256="5cdc14acc687e8c7",
    ),
)
