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

from bgworkers.tracing.config import tracing_on

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
    if not tracing_on():
        yield {}
        return
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    from bgworkers.tracing import carrier
    from bgworkers.tracing.attributes import SYSTEM, span_name

    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.name": "create",
        "messaging.operation.type": "create",
        "messaging.destination.name": queue,
        "bgworkers.actor": actor,
        "bgworkers.outbox": True,
    }
    if count != 1:
        attributes["messaging.batch.message_count"] = count
    tracer = trace.get_tracer("bgworkers")
    with tracer.start_as_current_span(
        span_name("create", queue), kind=SpanKind.PRODUCER, attributes=attributes
    ):
        options: dict[str, str] = {}
        carrier.inject(options)
        yield options


def publish_span(batch: Sequence[_Published]) -> contextlib.AbstractContextManager[Any]:
    """The relay's ``send`` span around publishing ``batch``; a null context when off."""
    if not tracing_on():
        return contextlib.nullcontext()
    return _publish_span(batch)


@contextlib.contextmanager
def _publish_span(batch: Sequence[_Published]) -> Iterator[Any]:
    from opentelemetry import context, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    from bgworkers.tracing import carrier
    from bgworkers.tracing.attributes import SYSTEM, error_text

    queues = sorted({item.queue for item in batch})
    destination = queues[0] if len(queues) == 1 else "multiple"
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": destination,
        "messaging.batch.message_count": len(batch),
        "bgworkers.outbox": True,
    }
    links = carrier.links_in_bodies([item.body for item in batch], limit=MAX_LINKS)
    tracer = trace.get_tracer("bgworkers")
    # A root span: the batch belongs to no one message's trace, it links to all of them.
    with tracer.start_as_current_span(
        f"send {destination}",
        context=context.Context(),
        kind=SpanKind.PRODUCER,
        links=links,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, error_text(exc)))
            raise
