"""The ``send {queue}`` (PRODUCER) and ``process {queue}`` (CONSUMER) spans around dramatiq's
enqueue and each delivery (docs/tracing.md, "The spans"). The middleware is the first of the
stack: its ``before_*`` hooks run before all others, so the consumer span is current while the
other middleware and the actor run, and its ``after_process_message`` runs after the retry
policy has decided.
"""

from __future__ import annotations

import threading
from typing import Any

from dramatiq import Broker, Message
from dramatiq.broker import MessageProxy
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from bgworkers.middleware.retry_policy import REASON_ATTR, RunEnd
from bgworkers.tracing import carrier
from bgworkers.tracing.config import flush_tracing
from bgworkers.tracing.spans import TRACER_NAME, error_text, messaging_attributes, span_name

#: Set on the message proxy (one per delivery): the consumer span and its context token.
SPAN_ATTR = "bgw_tracing_span"


class Tracing(RunEnd):
    """Makes the messaging spans; installed only when tracing is on."""

    def __init__(self, *, tracer_provider: trace.TracerProvider | None = None) -> None:
        # The global provider unless one is given (tests pass an in-memory one).
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._sending = threading.local()

    # --- producer ---------------------------------------------------------------------

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        if carrier.TRACEPARENT in message.options:
            return  # a retry or a published outbox message: it keeps its sender's context
        attributes = messaging_attributes("send", message.queue_name, self._ids(message))
        if delay:
            attributes["bgworkers.delay_ms"] = delay
        if "scheduled_at" in message.options:
            attributes["bgworkers.scheduled_at"] = str(message.options["scheduled_at"])
        span = self._tracer.start_span(
            span_name("send", message.queue_name), kind=SpanKind.PRODUCER, attributes=attributes
        )
        carrier.PROPAGATOR.inject(message.options, context=trace.set_span_in_context(span))
        # A thread sends one message at a time: a send still pending here raised (broker away).
        unsent: tuple[str, Span] | None = getattr(self._sending, "pending", None)
        if unsent is not None:
            unsent[1].set_status(Status(StatusCode.ERROR, "not sent"))
            unsent[1].end()
        self._sending.pending = (message.message_id, span)

    def after_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        pending: tuple[str, Span] | None = getattr(self._sending, "pending", None)
        if pending is not None and pending[0] == message.message_id:
            self._sending.pending = None
            pending[1].end()

    @staticmethod
    def _ids(message: Message[Any] | MessageProxy) -> dict[str, str]:
        return {"messaging.message.id": message.message_id, "bgworkers.actor": message.actor_name}

    # --- consumer ---------------------------------------------------------------------

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        options = message.options
        retries = options.get("retries", 0)
        links = carrier.link_to(options.get(carrier.TRACEPARENT), kind="sender")
        if retries:
            links += carrier.link_to(options.get(carrier.FIRST_ATTEMPT), kind="first_attempt")
        attributes = messaging_attributes("process", message.queue_name, self._ids(message))
        attributes["bgworkers.retries"] = retries
        span = self._tracer.start_span(
            span_name("process", message.queue_name),
            # No context in the message (a sender without tracing): a trace of its own.
            context=carrier.extract(options) or otel_context.Context(),
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
        )
        if carrier.FIRST_ATTEMPT not in options and span.get_span_context().is_valid:
            options[carrier.FIRST_ATTEMPT] = carrier.traceparent_of(span.get_span_context())
        token = otel_context.attach(trace.set_span_in_context(span))
        setattr(message, SPAN_ATTR, (span, token))

    def run_ended(
        self,
        message: MessageProxy,
        outcome: str,
        exception: BaseException | None,
        *,
        skipped: bool,
    ) -> None:
        started: tuple[Span, object] | None = message.__dict__.pop(SPAN_ATTR, None)
        if started is None:
            return
        span, token = started
        span.set_attribute("bgworkers.outcome", outcome)
        reason = getattr(message, REASON_ATTR, None)
        if reason:
            span.set_attribute("bgworkers.reason", str(reason))
        if exception is not None:
            span.set_attribute("error.type", type(exception).__name__)
            span.set_status(Status(StatusCode.ERROR, error_text(exception)))
        elif outcome == "dead_lettered":
            span.set_status(Status(StatusCode.ERROR, str(reason or outcome)))
        span.end()
        otel_context.detach(token)  # type: ignore[arg-type]

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        flush_tracing()
