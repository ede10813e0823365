"""Client spans around bgworkers' own I/O: an SMTP conversation, an HTTP request.

Why a context manager that may do nothing: the callers (the mailer, the sync HTTP layer) run
with tracing off in nearly every installation; then :func:`client_span` is one cached check
and a shared null context, and OpenTelemetry is never imported.

Attributes name the peer (``server.address``, ``server.port``) and what was done, never who
it was for: no recipient, URL path or query (Google puts sync tokens in the query).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from bgworkers.tracing.config import tracing_on

_NOTHING: contextlib.nullcontext[None] = contextlib.nullcontext()


def client_span(name: str, attributes: Mapping[str, Any]) -> contextlib.AbstractContextManager[Any]:
    """A CLIENT span named ``name``, child of the current span, while the block runs.

    An exception leaving the block sets ``error.type`` and the status ERROR (its text
    redacted); the span object (or None when tracing is off) is what ``as`` binds, so the
    caller can add what it learns (``http.response.status_code``).
    """
    if not tracing_on():
        return _NOTHING
    return _client_span(name, attributes)


@contextlib.contextmanager
def _client_span(name: str, attributes: Mapping[str, Any]) -> Iterator[Any]:
    from opentelemetry.trace import SpanKind, Status, StatusCode

    from bgworkers.tracing.attributes import error_text

    with _tracer().start_as_current_span(
        name,
        kind=SpanKind.CLIENT,
        attributes=dict(attributes),
        record_exception=False,  # its message and traceback are not redacted
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, error_text(exc)))
            raise


def _tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer("bgworkers")


def set_http_status(span: Any, status_code: int) -> None:
    """The response's status on a client span: ERROR from 400 on, as the HTTP conventions say."""
    if span is None:
        return
    span.set_attribute("http.response.status_code", status_code)
    if status_code >= 400:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("error.type", str(status_code))
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status_code}"))
