"""Client spans around bgworkers' own I/O: an SMTP conversation, an HTTP request.

Why a context manager that may do nothing: the callers (the mailer, the sync HTTP layer) run
with tracing off in nearly every installation; then :func:`client_span` is one cached check
and a shared null context, and OpenTelemetry is never imported.

Attributes name the peer (``server.address``, ``server.port``) and what was done, never who
it was for: no recipient, URL path or query (Google puts sync tokens in the query).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from bgworkers.tracing.config import tracing_on

TRACER_NAME = "bgworkers"
_NOTHING: contextlib.nullcontext[None] = contextlib.nullcontext()
#: The tracer given to :func:`use_tracer`, if any.
_used: list[Any] = [None]


def use_tracer(tracer: Any | None) -> None:
    """Make bgworkers' own spans (client, outbox) with ``tracer`` whatever the ``OTEL_*``
    variables say; None goes back to them (the global provider when tracing is on).

    For tests (an in-memory exporter), and an application that wants bgworkers' spans on a
    provider other than its global one; as :func:`bgworkers.db.engine.use_engine` for the engine.
    """
    _used[0] = tracer


def active_tracer() -> Any | None:
    """The tracer of bgworkers' own spans, or None when they are not made (tracing off)."""
    if _used[0] is not None:
        return _used[0]
    if not tracing_on():
        return None
    from opentelemetry import trace

    return trace.get_tracer(TRACER_NAME)


def client_span(name: str, attributes: Mapping[str, Any]) -> contextlib.AbstractContextManager[Any]:
    """A CLIENT span named ``name``, child of the current span, while the block runs.

    An exception leaving the block sets ``error.type`` and the status ERROR (its text
    redacted); the span object (or None when tracing is off) is what ``as`` binds, so the
    caller can add what it learns (``http.response.status_code``).
    """
    tracer = active_tracer()
    if tracer is None:
        return _NOTHING
    from opentelemetry.trace import SpanKind

    return current_span(tracer, name, kind=SpanKind.CLIENT, attributes=attributes)


@contextlib.contextmanager
def current_span(
    tracer: Any,
    name: str,
    *,
    kind: Any,
    attributes: Mapping[str, Any],
    links: Sequence[Any] = (),
    context: Any = None,
) -> Iterator[Any]:
    """A span current while the block runs; an exception leaving the block sets
    ``error.type`` and the status ERROR with the redacted text (OpenTelemetry's own recording
    would keep the unredacted message and traceback)."""
    from opentelemetry.trace import Status, StatusCode

    from bgworkers.tracing.attributes import error_text

    with tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        links=links,
        attributes=dict(attributes),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:  # a time limit or shutdown ends the span as failed too
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, error_text(exc)))
            raise


def set_http_status(span: Any, status_code: int) -> None:
    """The response's status on a client span: ERROR from 400 on, as the HTTP conventions say."""
    if span is None:
        return
    span.set_attribute("http.response.status_code", status_code)
    if status_code >= 400:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("error.type", str(status_code))
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status_code}"))
