"""Spans of the outbox: the application's ``create`` and the relay's batch ``send``.

Why two operations: the outbox splits sending in two, as the messaging conventions' batch
publishing does. Where the application writes the row, a ``create {queue}`` span (kind
PRODUCER) stands for the message; its context goes into the stored envelope, so the consumer's
span is its child whatever happens in between. The relay later publishes rows of many
traces at once: its ``send`` span (kind PRODUCER) starts a trace of its own and links to each
message's ``create`` span. Both are null contexts while tracing is off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Final, Protocol

from bgworkers.tracing.spans import active_tracer, current_span

#: Links kept on one relay span (the SDK's default limit; a batch may hold thousands).
MAX_LINKS: Final = 128


class _Published(Protocol):
    @property
    def queue(self) -> str: ...

    @property
    def body(self) -> bytes: ...


@contextlib.contextmanager
def create_span(queue: str, actor: str, *, count: int = 1) -> Iterator[dict[str, str]]:
    """The options that carry the ``create`` span's context (empty when tracing is off).

    ``count`` > 1: one span for a batch (``enqueue_many``), every message its child.
    """
    tracer = active_tracer()
    if tracer is None:
        yield {}
        return
    from opentelemetry.trace import SpanKind

    from bgworkers.tracing import carrier
    from bgworkers.tracing.attributes import span_name

    attributes = _attributes("create", queue)
    attributes["bgworkers.actor"] = actor
    if count != 1:
        attributes["messaging.batch.message_count"] = count
    name = span_name("create", queue)
    with current_span(tracer, name, kind=SpanKind.PRODUCER, attributes=attributes):
        options: dict[str, str] = {}
        carrier.inject(options)
        yield options


def publish_span(batch: Sequence[_Published]) -> contextlib.AbstractContextManager[Any]:
    """The relay's ``send`` span around publishing ``batch``; a null context when off."""
    tracer = active_tracer()
    if tracer is None:
        return contextlib.nullcontext()
    from opentelemetry import context
    from opentelemetry.trace import SpanKind

    from bgworkers.tracing import carrier

    queues = sorted({item.queue for item in batch})
    destination = queues[0] if len(queues) == 1 else "multiple"
    attributes = _attributes("send", destination)
    attributes["messaging.batch.message_count"] = len(batch)
    # A root span: the batch belongs to no one message's trace, it links to all of them.
    return current_span(
        tracer,
        f"send {destination}",
        context=context.Context(),
        kind=SpanKind.PRODUCER,
        links=carrier.links_in_bodies([item.body for item in batch], limit=MAX_LINKS),
        attributes=attributes,
    )


def _attributes(operation: str, destination: str) -> dict[str, Any]:
    from bgworkers.tracing.attributes import SYSTEM

    return {
        "messaging.system": SYSTEM,
        "messaging.operation.name": operation,
        "messaging.operation.type": operation,
        "messaging.destination.name": destination,
        "bgworkers.outbox": True,
    }
