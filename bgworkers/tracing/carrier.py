"""The trace context a message carries, in its dramatiq ``options`` (docs/tracing.md, "How the
context travels").

Why options: they travel with the message through every path it takes (``actor.send``, the
outbox row, the delay queue, every retry) and the envelope check bounds them. The keys are W3C
Trace Context's own, so the options dict is the propagator's carrier; baggage is not
propagated (it could carry anything into a queue).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
FIRST_ATTEMPT: Final = "bgw_first_attempt"

#: Writes a context's span (default: the current one) into a message's options, and reads it.
PROPAGATOR: Final = TraceContextTextMapPropagator()
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
#: A traceparent as it appears in an encoded envelope (for the relay, without parsing JSON).
_IN_BODY = re.compile(rb'"traceparent":"(00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})"')


def extract(options: Mapping[str, Any]) -> Context | None:
    """The sender's context from ``options``; None when the message carries none."""
    if TRACEPARENT not in options:
        return None
    carrier = {key: options[key] for key in (TRACEPARENT, TRACESTATE) if key in options}
    return PROPAGATOR.extract(carrier)


def traceparent_of(span_context: SpanContext) -> str:
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
        f"-{int(span_context.trace_flags):02x}"
    )


def link_to(traceparent: object, **attributes: str) -> list[Link]:
    """A one-element list with a link to the span a ``traceparent`` string names, or an empty
    one when it names none."""
    match = _TRACEPARENT.fullmatch(traceparent) if isinstance(traceparent, str) else None
    if match is None:
        return []
    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if not trace_id or not span_id:
        return []
    flags = TraceFlags(int(match[3], 16))
    return [
        Link(SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags), attributes or None)
    ]


def links_in_bodies(bodies: list[bytes], *, limit: int) -> list[Link]:
    """Links to the senders of encoded envelopes (at most ``limit``, one per sender span)."""
    seen: set[bytes] = set()
    links: list[Link] = []
    for body in bodies:
        match = _IN_BODY.search(body)
        if match is None or match[1] in seen:
            continue
        seen.add(match[1])
        links.extend(link_to(match[1].decode()))
        if len(links) >= limit:
            break
    return links
