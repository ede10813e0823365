"""Build the broker with bgworkers' middleware stack, and screen what it delivers.

Order matters: dramatiq runs ``before_*`` hooks in list order and ``after_*`` hooks in
reverse. Logging comes first so every later hook logs with the message's context; the retry
policy is the last middleware with message hooks, so its decision (retry or dead-letter) is
made before the logging and metrics middleware report the outcome. The connectivity check
and the worker-process boot, added after it on the RabbitMQ broker, have no message hooks.

:class:`ScreeningRabbitmqBroker` is dramatiq's RabbitMQ broker with two guards that must sit
below the middleware: its consumer checks every delivery with
:func:`bgworkers.brokers.envelope.decode_envelope` before dramatiq reads it (an invalid one is
nacked, so RabbitMQ moves it to ``<queue>.XQ``, with the reason logged and counted), and its
``enqueue`` refuses a message over ``BGW_MESSAGE_MAX_BYTES``. It overrides the consumer's
``__next__`` and wraps dramatiq's private message proxy: pyproject pins dramatiq exactly.
"""

from __future__ import annotations

import hashlib
import reprlib
from typing import Any

import dramatiq
import pika.exceptions
from dramatiq.broker import Consumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import q_name
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)

from bgworkers.brokers.broker_nodes import broker_urls
from bgworkers.brokers.cluster_broker import ClusterRabbitmqBroker
from bgworkers.brokers.coalesced_acks import CoalescedAcks
from bgworkers.brokers.envelope import InvalidEnvelope, decode_envelope
from bgworkers.brokers.hook_dispatch import SelectiveHooks
from bgworkers.compat.dramatiq import RabbitmqConsumer, RabbitmqMessage, message_of, nack_tag
from bgworkers.console.middleware import DeadLetterIndex
from bgworkers.errors import MessageTooLarge
from bgworkers.logs.loggers import get_logger
from bgworkers.metrics.messages import MESSAGE_METRICS, bounded_labels
from bgworkers.middleware.connectivity import BrokerConnectivityCheck
from bgworkers.middleware.exporter import GroupExporter
from bgworkers.middleware.message_logging import MessageLogging
from bgworkers.middleware.metrics import MessageMetrics
from bgworkers.middleware.parent_death import StopWithParent
from bgworkers.middleware.queue_gate import QueueArgumentsGate
from bgworkers.middleware.resources import CloseResources
from bgworkers.middleware.retry_policy import RetryPolicy
from bgworkers.middleware.schema_gate import SchemaGate
from bgworkers.outbox.middleware import OutboxRelay
from bgworkers.processes.boot import WorkerProcessBoot
from bgworkers.scheduling.middleware import ScheduleGuard
from bgworkers.settings import Settings
from bgworkers.tracing.config import require_extra, tracing_on

log = get_logger("bgworkers.messages")

#: Bytes of a refused body quoted in its log line.
EXCERPT_BYTES = 200


def middleware_stack(settings: Settings) -> list[Middleware]:
    return [
        *tracing_middleware(),  # first: its spans enclose every other hook of a message
        MessageLogging(),
        MessageMetrics(),
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        CurrentMessage(),
        ScheduleGuard(),  # in place of periodiq's middleware: see bgworkers.scheduling
        OutboxRelay(settings),  # before CloseResources: its thread stops before the engine closes
        CloseResources(),
        DeadLetterIndex(),  # just before the retry policy: its after-hooks see the decision
        RetryPolicy(
            max_retries=settings.retry_max_retries,
            min_backoff_ms=settings.retry_min_backoff_ms,
            max_backoff_ms=settings.retry_max_backoff_ms,
        ),
    ]


def build_broker(settings: Settings, *, worker_process: bool = False) -> ScreeningRabbitmqBroker:
    """A RabbitMQ broker with publisher confirms; connects lazily, on first use.

    Several ``;``-separated URLs are several nodes of one cluster, tried in order.
    ``worker_process``: the broker of a process run by dramatiq's or periodiq's CLI (see
    :mod:`bgworkers.brokers.wiring`), which also gets the middleware with process hooks: only
    such a process sets up its own logging, dies with its parent, checks the schema and the
    queues at boot and may serve the group's metrics. An application's broker, or one a test
    builds and boots in-process, has none of them.
    """
    if worker_process:
        require_extra()  # bgworkers' own processes: a missing extra is one line and exit 2
    url = settings.broker_url.get_secret_value()
    # confirm_delivery: without it a publish that RabbitMQ drops is lost silently.
    broker = ScreeningRabbitmqBroker(
        url=broker_urls(url),
        confirm_delivery=True,
        queue_type=settings.queue_type,
        delivery_limit=settings.queue_delivery_limit,
        middleware=middleware_stack(settings),
        message_max_bytes=settings.message_max_bytes,
    )
    broker.add_middleware(BrokerConnectivityCheck(url=url))
    if not worker_process:
        return broker
    # Only the RabbitMQ broker, which dramatiq's CLI boots: logging of a worker process.
    broker.add_middleware(WorkerProcessBoot())
    # Worker processes only (process_boot), not in the stub stack:
    broker.add_middleware(StopWithParent())
    broker.add_middleware(SchemaGate())
    broker.add_middleware(QueueArgumentsGate())
    # The group's /metrics, served by one worker process (see bgworkers.middleware.exporter):
    broker.add_middleware(GroupExporter())
    return broker


def tracing_middleware() -> list[Middleware]:
    """The tracing middleware when the ``OTEL_*`` variables ask for traces; else none."""
    if not tracing_on():
        return []
    from bgworkers.tracing.middleware import Tracing

    return [Tracing()]


class StackStubBroker(SelectiveHooks, StubBroker):
    """dramatiq's in-memory broker, dispatching hooks as the RabbitMQ broker does."""


def build_stub_broker(settings: Settings) -> StubBroker:
    """The same stack on dramatiq's in-memory broker, for fast unit tests."""
    return StackStubBroker(middleware=middleware_stack(settings))


def install(broker: dramatiq.Broker) -> None:
    dramatiq.set_broker(broker)


class ScreeningRabbitmqBroker(SelectiveHooks, ClusterRabbitmqBroker):
    """RabbitMQ broker whose consumers refuse invalid deliveries and that caps message size.

    Its hooks skip the middleware that leave them empty (:mod:`bgworkers.brokers.hook_dispatch`).

    ``message_max_bytes``: the largest encoded message sent or accepted, in bytes.
    """

    def __init__(self, *, message_max_bytes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message_max_bytes = message_max_bytes

    @property
    def consumer_class(self) -> type[Consumer]:
        return _ScreeningConsumer

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Send ``message``; :class:`MessageTooLarge` (nothing sent) when over the cap."""
        size = len(message.encode())
        if size > self.message_max_bytes:
            raise MessageTooLarge(
                actor_name=message.actor_name, size_bytes=size, max_bytes=self.message_max_bytes
            )
        return super().enqueue(message, delay=delay)


class _ScreeningConsumer(CoalescedAcks, RabbitmqConsumer):
    """dramatiq's consumer, with every body checked before dramatiq decodes or reads it,
    and acks sent in batches (:mod:`bgworkers.brokers.coalesced_acks`)."""

    broker: ScreeningRabbitmqBroker

    def __next__(self) -> _BoundedMessage | None:
        # Replaces dramatiq's __next__, whose connection-error handling is copied here: a
        # contract test (bgworkers.compat.dramatiq) fails when dramatiq's changes.
        try:
            method, _properties, body = next(self.iterator)
        except (
            AssertionError,
            pika.exceptions.AMQPConnectionError,
            pika.exceptions.AMQPChannelError,
        ) as exc:
            # As dramatiq's own consumer: a deleted queue is declared again on restart.
            if getattr(exc, "reply_code", None) == 404:
                self.broker.queues_pending.add(q_name(self.queue_name))
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        if method is None:
            return None  # idle: lets the consumer thread run its delayed messages
        try:
            message = decode_envelope(
                body,
                queue_name=self.queue_name,
                actors=self.broker.actors,
                max_bytes=self.broker.message_max_bytes,
            )
        except InvalidEnvelope as exc:
            # Nacked: RabbitMQ dead-letters it to <queue>.XQ.
            nack_tag(self, method.delivery_tag)
            try:
                record_refused(self.queue_name, body, exc, actors=self.broker.actors)
            except Exception:  # a failed log or metric write must not stop consuming
                log.exception("message_refusal_not_recorded", queue=q_name(self.queue_name))
            return None
        self.known_tags.add(method.delivery_tag)
        if method.redelivered:
            count_redelivered(self.queue_name, self.broker.actors)
        return _BoundedMessage(method.redelivered, method.delivery_tag, message)  # type: ignore[no-untyped-call]


def count_redelivered(queue_name: str, actors: Any) -> None:
    """Count a delivery RabbitMQ hands out again: its worker died or lost its connection."""
    queue, _ = bounded_labels(queue_name, None, actors)
    MESSAGE_METRICS.get().redelivered.labels(queue).inc()


def record_refused(queue_name: str, body: bytes, exc: InvalidEnvelope, *, actors: Any) -> None:
    """One ``message_processed`` line (outcome ``dead_lettered``) and the counters."""
    queue, actor = bounded_labels(queue_name, exc.actor, actors)
    metrics = MESSAGE_METRICS.get()
    metrics.dead_lettered.labels(queue, actor).inc()
    metrics.invalid.labels(queue, exc.code).inc()
    log.error(
        "message_processed",
        outcome="dead_lettered",
        reason=exc.code,
        error=exc.detail,
        queue=queue,
        message_id=exc.message_id,
        actor=exc.actor,
        size_bytes=len(body),
        # The id when there is none: RabbitMQ keeps the body as is in <queue>.XQ.
        body_sha256=hashlib.sha256(body).hexdigest()[:16],
        excerpt=body[:EXCERPT_BYTES].decode("utf-8", "backslashreplace"),
    )


_ARGUMENTS_REPR = reprlib.Repr()
_ARGUMENTS_REPR.maxstring = 60
_ARGUMENTS_REPR.maxother = 60
_ARGUMENTS_REPR.maxlevel = 3
_ARGUMENTS_REPR.maxlist = _ARGUMENTS_REPR.maxdict = _ARGUMENTS_REPR.maxtuple = 8
_MAX_SHOWN_ARGUMENTS = 8


class _BoundedMessage(RabbitmqMessage):
    """dramatiq's message proxy with a bounded ``str``.

    dramatiq logs ``str(message)`` (the actor and the ``repr`` of every argument) in
    "Failed to process message ..." and a few other lines: with a 1 MB argument that was a
    1 MB log record. Here each argument is shown in at most ~60 characters (``reprlib``,
    whose cost does not depend on the argument's size).
    """

    def __str__(self) -> str:
        message = message_of(self)
        shown = [_ARGUMENTS_REPR.repr(arg) for arg in message.args[:_MAX_SHOWN_ARGUMENTS]]
        shown += [
            f"{name[:40]}={_ARGUMENTS_REPR.repr(value)}"
            for name, value in list(message.kwargs.items())[:_MAX_SHOWN_ARGUMENTS]
        ]
        hidden = len(message.args) + len(message.kwargs) - len(shown)
        if hidden > 0:
            shown.append(f"…{hidden} more")
        return f"{message.actor_name}({', '.join(shown)})"

    def __repr__(self) -> str:
        return f"<message {message_of(self).message_id} {self}>"
