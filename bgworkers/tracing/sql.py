"""Optional CLIENT spans for SQL statements, through SQLAlchemy's engine events.

Why optional: a message runs a handful of statements, so their spans multiply what a trace
holds and what tracing costs; they are worth it while finding where a slow message waits
for the database, and are turned on with ``BGW_TRACE_SQL=true`` (with tracing on).

Why so little in them: a statement's text holds literal values in some queries, and its
parameters hold user data (addresses, tokens). A span names the database system
(``db.system``), the operation (``db.operation.name``: SELECT, INSERT, ...) and the server
(``server.address``/``server.port``), never the statement, its parameters, the user or the
password.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.engine import Engine

#: Where the open span of a statement is kept on SQLAlchemy's execution context.
_SPAN_ATTR: Final = "_bgw_sql_span"
#: Characters of the statement's first word used as its operation (an unknown word is OTHER).
_OPERATIONS: Final = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "COMMIT", "ROLLBACK", "CREATE"}
    | {"ALTER", "DROP", "PRAGMA", "SET", "SAVEPOINT", "RELEASE", "VACUUM", "ANALYZE", "LOCK"}
)


def trace_statements(engine: Engine, tracer: Any) -> None:
    """Make a CLIENT span with ``tracer`` around each statement ``engine`` runs."""
    from opentelemetry.trace import SpanKind

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
        from opentelemetry.trace import Status, StatusCode

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
