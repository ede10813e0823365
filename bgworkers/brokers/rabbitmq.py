"""bgworkers' RabbitMQ broker class: it screens what it delivers, acks in batches and calls
each middleware hook only where it is defined.

:class:`ScreeningRabbitmqBroker` is dramatiq's RabbitMQ broker with two guards that must sit
below the middleware (put on it by :func:`bgworkers.stack.broker.build_broker`; the broker
knows none of them): its consumer checks every delivery with
:func:`bgworkers.brokers.envelope.decode_envelope` before dramatiq reads it (docs/architecture.md,
"Poison messages"), and its ``enqueue`` refuses a message over ``BGW_MESSAGE_MAX_BYTES``. It
overrides the consumer's ``__next__`` and ``ack`` (:class:`CoalescedAcks`) and wraps
dramatiq's private message proxy: pyproject pins dramatiq exactly.
"""

from __future__ import annotations

import hashlib
import reprlib
from collections import deque
from typing import Any

import pika.exceptions
from dramatiq.broker import Consumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import q_name
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message
from dramatiq.middleware import Middleware, MiddlewareError

from bgworkers.brokers.cluster_broker import ClusterRabbitmqBroker
from bgworkers.brokers.envelope import InvalidEnvelope, decode_envelope
from bgworkers.compat.dramatiq import (
    RabbitmqConsumer,
    RabbitmqMessage,
    delivery_tag,
    message_of,
    nack_tag,
)
from bgworkers.compat.pika import async_channel
from bgworkers.errors import MessageTooLarge
from bgworkers.logs.loggers import get_logger
from bgworkers.metrics.messages import MESSAGE_METRICS, bounded_labels

log = get_logger("bgworkers.messages")

#: Bytes of a refused body quoted in its log line.
EXCERPT_BYTES = 200


_MISSING = object()


def implements(middleware: Middleware, hook: str) -> bool:
    """Whether calling ``hook`` on ``middleware`` could do anything.

    A hook that :class:`Middleware` does not define at all counts as implemented, so that
    calling it fails as it does in dramatiq.
    """
    if hook in vars(middleware):
        return True
    default = getattr(Middleware, hook, _MISSING)
    return default is _MISSING or getattr(type(middleware), hook, _MISSING) is not default


class SelectiveHooks:
    """Mixin for a dramatiq broker class: its hooks skip middleware without that hook.

    Why: dramatiq's ``Broker.emit_before``/``emit_after`` call the hook on *every* middleware,
    most of them :class:`~dramatiq.middleware.Middleware`'s empty defaults: with bgworkers' 17
    middleware, about a hundred calls per message did nothing. This mixin keeps
    dramatiq's order and error handling exactly (a :class:`~dramatiq.middleware.MiddlewareError`
    from a ``before_*`` hook propagates, any other exception is logged as dramatiq logs it) and
    skips the middleware whose class leaves the hook at the default. The list per signal is
    rebuilt whenever the broker's middleware list changes (``add_middleware`` or a direct edit).

    Kept rather than left to dramatiq because it saves 5.5-11% of a CPU-bound worker's drain rate
    (``hook_share_p1t8`` of ``bench/stack_overhead.py``; docs/architecture.md, "What the stack
    costs"), above the 5% for which it would be left to dramatiq. It replaces dramatiq's public
    ``emit_before``/``emit_after``: :mod:`bgworkers.compat.dramatiq` pins their source.
    """

    middleware: list[Middleware]
    logger: Any

    def _implementing(self, hook: str) -> tuple[Middleware, ...]:
        cache: dict[str, tuple[tuple[Middleware, ...], tuple[Middleware, ...]]]
        cache = self.__dict__.setdefault("_bgw_hook_cache", {})
        current = tuple(self.middleware)
        cached = cache.get(hook)
        if cached is not None and cached[0] == current:
            return cached[1]
        selected = tuple(m for m in current if implements(m, hook))
        cache[hook] = (current, selected)
        return selected

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        hook = "before_" + signal
        for middleware in self._implementing(hook):
            try:
                getattr(middleware, hook)(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:  # as dramatiq's own dispatch: one failing hook must not skip the rest
                self.logger.critical(
                    "Unexpected failure in %s of %r.", hook, middleware, exc_info=True
                )

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        hook = "after_" + signal
        for middleware in reversed(self._implementing(hook)):
            try:
                getattr(middleware, hook)(self, *args, **kwargs)
            except Exception:  # as dramatiq's own dispatch: one failing hook must not skip the rest
                self.logger.critical(
                    "Unexpected failure in %s of %r.", hook, middleware, exc_info=True
                )


class StackStubBroker(SelectiveHooks, StubBroker):
    """dramatiq's in-memory broker, dispatching hooks as the RabbitMQ broker does."""


class ScreeningRabbitmqBroker(SelectiveHooks, ClusterRabbitmqBroker):
    """RabbitMQ broker whose consumers refuse invalid deliveries and that caps message size.

    Its hooks skip the middleware that leave them empty (:class:`SelectiveHooks`).

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


class CoalescedAcks:
    """Mixin for dramatiq's ``_RabbitmqConsumer``: acks handed to the consumer's connection in
    batches, without a flush each.

    Why: dramatiq's RabbitMQ consumer acks each message from the worker thread that ran it by
    scheduling ``channel.basic_ack`` on the connection's thread (``add_callback_threadsafe``:
    a wake-up write on pika's socket pair), and pika's blocking ``basic_ack`` then runs its
    I/O loop until that one frame is written. Under load that was a third of a worker process's
    CPU (py-spy, 1 process x 8 threads draining no-op messages), and every wake-up and every
    flush gives up the GIL, which the consumer thread then waits to get back from busy worker
    threads.

    Here a worker thread appends the delivery tag to a deque and schedules one callback only if
    none is pending; the callback, on the connection's thread, acks every tag waiting through
    the channel's asynchronous ``basic_ack``, which queues the frame. The consumer thread's own
    I/O loop (it runs continuously while it waits for deliveries) writes it out with whatever
    else is pending. Each message is still acked on its own, in the order its run ended, and
    only after its after-hooks ran, so nothing changes for delivery guarantees: an ack lost with
    the connection means a redelivery, as before.

    Relies on the consumer's ``connection`` (a ``pika.BlockingConnection``), ``channel``,
    ``known_tags`` and ``logger``, and on pika's asynchronous channel inside the blocking one
    (:mod:`bgworkers.compat.pika`, :mod:`bgworkers.compat.dramatiq`).
    """

    connection: Any
    channel: Any
    known_tags: set[int]
    logger: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set before any worker thread can ack: a deque made lazily by two threads at once
        # could lose the tags appended to the one that was not kept.
        self._bgw_pending_acks: deque[int] = deque()
        self._bgw_ack_scheduled = False
        super().__init__(*args, **kwargs)

    def ack(self, message: Any) -> None:
        try:
            self.known_tags.remove(delivery_tag(message))
        except KeyError:
            self.logger.warning("Failed to ack message: not in known tags.")
            return
        # Appended before the flag is read, and the flag is cleared before the callback
        # drains: a tag appended while a callback is pending is always drained by it.
        self._bgw_pending_acks.append(delivery_tag(message))
        if self._bgw_ack_scheduled:
            return
        self._bgw_ack_scheduled = True
        try:
            self.connection.add_callback_threadsafe(self._send_pending_acks)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
            self._bgw_ack_scheduled = False
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        except Exception:  # as dramatiq's ack: the message is redelivered, the worker goes on
            self._bgw_ack_scheduled = False
            self.logger.warning("Failed to ack message.", exc_info=True)

    def _send_pending_acks(self) -> None:
        """On the connection's thread: every waiting tag acked, frames queued for writing."""
        self._bgw_ack_scheduled = False
        pending = self._bgw_pending_acks
        channel = async_channel(self.channel)
        while pending:
            channel.basic_ack(delivery_tag=pending.popleft())


class _ScreeningConsumer(CoalescedAcks, RabbitmqConsumer):
    """dramatiq's consumer, with every body checked before dramatiq decodes or reads it,
    and acks sent in batches (:class:`CoalescedAcks`)."""

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
        if method.redelivered:  # its worker died or lost its connection
            queue, _ = bounded_labels(self.queue_name, None, self.broker.actors)
            MESSAGE_METRICS.get().redelivered.labels(queue).inc()
        return _BoundedMessage(method.redelivered, method.delivery_tag, message)  # type: ignore[no-untyped-call]


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
