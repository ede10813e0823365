"""The spans bgworkers makes outside the message middleware: SMTP and HTTP client spans, the
outbox's ``create`` and relay ``send``, and SQL statements' with ``BGW_TRACE_SQL=true`` (each
described in docs/tracing.md, "The spans", with why SQL spans are off by default).

Why context managers that may do nothing: their callers (the mailer, the sync HTTP layer, the
outbox) run with tracing off in nearly every installation; then each is one cached check and a
null context, and OpenTelemetry is never imported.

Attributes hold only ids, names, counts and the peer, never what docs/tracing.md, "What is
never in a span", lists (a SQL statement's text holds literal values in some queries); error
texts go through :func:`bgworkers.logs.redaction.redact_text`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from bgworkers.logs.redaction import redact_text
from bgworkers.tracing.config import tracing_on

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

TRACER_NAME = "bgworkers"


def _canonical(queue_name: str) -> str:
    """The queue's name without ``.DQ``/``.XQ``; dramatiq is imported only with tracing on."""
    from dramatiq.common import q_name

    return q_name(queue_name)


#: Characters of a (redacted) error text kept in a span's status.
MAX_ERROR_CHARS: Final = 300
#: Links kept on one relay span (the SDK's default limit; a batch may hold thousands).
MAX_LINKS: Final = 128
#: Where the open span of a statement is kept on SQLAlchemy's execution context.
_SQL_SPAN_ATTR: Final = "_bgw_sql_span"
#: The statement's first words kept as its operation (any other is OTHER).
_OPERATIONS: Final = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "COMMIT", "ROLLBACK", "CREATE"}
    | {"ALTER", "DROP", "PRAGMA", "SET", "SAVEPOINT", "RELEASE", "VACUUM", "ANALYZE", "LOCK"}
)
_NOTHING: contextlib.nullcontext[None] = contextlib.nullcontext()
#: The tracer given to :func:`use_tracer`, if any.
_used: list[Any] = [None]


def messaging_attributes(
    operation: str, queue_name: str, attributes: Mapping[str, Any]
) -> dict[str, Any]:
    """The attributes every messaging span has (``operation`` is also its type), then
    ``attributes``."""
    return {
        "messaging.system": "rabbitmq",
        "messaging.operation.name": operation,
        "messaging.operation.type": operation,
        "messaging.destination.name": _canonical(queue_name),
        **attributes,
    }


def span_name(operation: str, queue_name: str) -> str:
    """``{operation} {queue}``, as the conventions name messaging spans."""
    return f"{operation} {_canonical(queue_name)}"


def error_text(exception: BaseException) -> str:
    """``Type: text`` with secrets scrubbed, cut to :data:`MAX_ERROR_CHARS`."""
    return redact_text(f"{type(exception).__name__}: {exception}")[:MAX_ERROR_CHARS]


def use_tracer(tracer: Any | None) -> None:
    """Make bgworkers' own spans (client, outbox) with ``tracer`` whatever the ``OTEL_*``
    variables say; None goes back to them. For tests (an in-memory exporter), and an
    application that wants bgworkers' spans on a provider other than its global one."""
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

    The span object (or None when tracing is off) is what ``as`` binds, so the caller can add
    what it learns (``http.response.status_code``).
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


@contextlib.contextmanager
def create_span(queue: str, actor: str, *, count: int = 1) -> Iterator[dict[str, str]]:
    """The outbox's ``create`` span while the caller writes its row: yields the options that
    carry its context (empty when tracing is off), for the stored envelope.

    ``count`` > 1: one span for a batch (``enqueue_many``), every message its child.
    """
    tracer = active_tracer()
    if tracer is None:
        yield {}
        return
    from opentelemetry.trace import SpanKind

    from bgworkers.tracing import carrier

    attributes: dict[str, Any] = {"bgworkers.outbox": True, "bgworkers.actor": actor}
    if count != 1:
        attributes["messaging.batch.message_count"] = count
    with current_span(
        tracer,
        span_name("create", queue),
        kind=SpanKind.PRODUCER,
        attributes=messaging_attributes("create", queue, attributes),
    ):
        options: dict[str, str] = {}
        carrier.PROPAGATOR.inject(options)
        yield options


class _Published(Protocol):
    @property
    def queue(self) -> str: ...

    @property
    def body(self) -> bytes: ...


def publish_span(batch: Sequence[_Published]) -> contextlib.AbstractContextManager[Any]:
    """The relay's ``send`` span around publishing ``batch``; a null context when off."""
    tracer = active_tracer()
    if tracer is None:
        return _NOTHING
    from opentelemetry import context
    from opentelemetry.trace import SpanKind

    from bgworkers.tracing import carrier

    queues = sorted({item.queue for item in batch})
    destination = queues[0] if len(queues) == 1 else "multiple"
    attributes = {"bgworkers.outbox": True, "messaging.batch.message_count": len(batch)}
    # A root span: the batch belongs to no one message's trace, it links to all of them.
    return current_span(
        tracer,
        span_name("send", destination),
        context=context.Context(),
        kind=SpanKind.PRODUCER,
        links=carrier.links_in_bodies([item.body for item in batch], limit=MAX_LINKS),
        attributes=messaging_attributes("send", destination, attributes),
    )


def trace_statements(engine: Engine, tracer: Any) -> None:
    """Make a CLIENT span with ``tracer`` around each statement ``engine`` runs."""
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from sqlalchemy import event

    attributes: dict[str, Any] = {"db.system": engine.dialect.name}
    if engine.url.host:
        attributes["server.address"] = engine.url.host
    if engine.url.port:
        attributes["server.port"] = engine.url.port

    def before(statement: str, context: Any, **_: Any) -> None:
        operation = operation_of(statement)
        span = tracer.start_span(
            operation,
            kind=SpanKind.CLIENT,
            attributes={**attributes, "db.operation.name": operation},
        )
        setattr(context, _SQL_SPAN_ATTR, span)

    def after(context: Any, **_: Any) -> None:
        span = context.__dict__.pop(_SQL_SPAN_ATTR, None)
        if span is not None:
            span.end()

    def failed(exception_context: Any) -> None:
        context = exception_context.execution_context
        span = context.__dict__.pop(_SQL_SPAN_ATTR, None) if context is not None else None
        if span is None:
            return
        error = exception_context.original_exception
        span.set_attribute("error.type", type(error).__name__)
        # The driver's text may quote the statement or a value: the type is what is kept.
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()

    # named=True: SQLAlchemy passes the event's arguments by name; each takes what it reads.
    event.listen(engine, "before_cursor_execute", before, named=True)
    event.listen(engine, "after_cursor_execute", after, named=True)
    event.listen(engine, "handle_error", failed)


def operation_of(statement: str) -> str:
    """The statement's first keyword in capitals (``SELECT``), ``OTHER`` if not a known one."""
    words = statement.lstrip(" \t\r\n(").split(None, 1)
    word = words[0].upper() if words else ""
    return word if word in _OPERATIONS else "OTHER"
