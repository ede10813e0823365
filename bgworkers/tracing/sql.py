"""Optional CLIENT spans for SQL statements, through SQLAlchemy's engine events
(``BGW_TRACE_SQL=true``; docs/tracing.md, "The spans", says why they are off by default).

A span names the database system, the operation and the server, never the statement (its text
holds literal values in some queries), its parameters (user data), the user or the password.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.engine import Engine

#: Where the open span of a statement is kept on SQLAlchemy's execution context.
_SPAN_ATTR: Final = "_bgw_sql_span"
#: The statement's first words kept as its operation (any other is OTHER).
_OPERATIONS: Final = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "COMMIT", "ROLLBACK", "CREATE"}
    | {"ALTER", "DROP", "PRAGMA", "SET", "SAVEPOINT", "RELEASE", "VACUUM", "ANALYZE", "LOCK"}
)


def trace_statements(engine: Engine, tracer: Any) -> None:
    """Make a CLIENT span with ``tracer`` around each statement ``engine`` runs."""
    from opentelemetry.trace import SpanKind, Status, StatusCode

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
        setattr(context, _SPAN_ATTR, span)

    def after(context: Any, **_: Any) -> None:
        span = context.__dict__.pop(_SPAN_ATTR, None)
        if span is not None:
            span.end()

    def failed(exception_context: Any) -> None:
        context = exception_context.execution_context
        span = context.__dict__.pop(_SPAN_ATTR, None) if context is not None else None
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
