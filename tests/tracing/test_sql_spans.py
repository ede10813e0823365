"""SQL statement spans (``BGW_TRACE_SQL``): kind, system, operation, parent; never a value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from bgworkers.db.engine import get_engine, make_engine, use_engine
from bgworkers.settings import Settings
from bgworkers.tracing.spans import operation_of, trace_statements, use_tracer

SECRET = "ada-s3cret@example.org"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Iterator[object]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bgworkers")
    use_tracer(tracer)
    yield tracer
    use_tracer(None)


def run_statements(engine: Engine, tracer: object) -> None:
    with tracer.start_as_current_span("process email") as _, Session(engine) as session:  # type: ignore[attr-defined]
        session.execute(text("CREATE TEMPORARY TABLE notes (body TEXT)"))
        session.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": SECRET})
        session.execute(text(f"SELECT count(*) FROM notes WHERE body = '{SECRET}'"))
        with pytest.raises(DBAPIError):  # SQLite: OperationalError; PostgreSQL: Programming
            session.execute(text(f"SELECT * FROM no_such_table WHERE x = '{SECRET}'"))


def test_each_statement_is_a_client_span_of_the_current_one_without_values(
    db_engine: Engine, tracer: object, exporter: InMemorySpanExporter
) -> None:
    engine = make_engine(db_engine.url.render_as_string(hide_password=False))
    trace_statements(engine, tracer)
    try:
        run_statements(engine, tracer)
    finally:
        engine.dispose()
    spans = exporter.get_finished_spans()
    [parent] = [s for s in spans if s.name == "process email"]
    statements = [s for s in spans if s.kind == SpanKind.CLIENT]
    names = [s.name for s in statements]
    assert {"CREATE", "INSERT", "SELECT"} <= set(names), names
    for span in statements:
        attributes = dict(span.attributes or {})
        assert attributes["db.system"] == engine.dialect.name
        assert attributes["db.operation.name"] == span.name
        assert span.parent is not None and span.parent.span_id == parent.context.span_id
        assert SECRET not in repr(attributes) and SECRET not in str(span.status.description)
    [failed] = [s for s in statements if s.status.status_code is StatusCode.ERROR]
    assert failed.name == "SELECT"
    assert dict(failed.attributes or {})["error.type"] in {
        "UndefinedTable",  # psycopg's class for the error
        "OperationalError",  # sqlite3's
    }


def test_the_setting_turns_them_on_for_the_process_engine(
    tmp_path: Path, tracer: object, exporter: InMemorySpanExporter
) -> None:
    for enabled in (False, True):
        url = SecretStr(f"sqlite:///{tmp_path}/{enabled}.db")
        use_engine(None)
        engine = get_engine(Settings(database_url=url, trace_sql=enabled))
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        finally:
            use_engine(None)
            engine.dispose()
        statements = [s for s in exporter.get_finished_spans() if s.name == "SELECT"]
        assert len(statements) == (1 if enabled else 0)


def test_the_operation_is_the_first_keyword_or_other() -> None:
    assert operation_of("  select 1") == "SELECT"
    assert operation_of("(SELECT 1) UNION (SELECT 2)") == "SELECT"
    assert operation_of("WITH x AS (SELECT 1) SELECT * FROM x") == "WITH"
    assert operation_of("ada@example.org") == "OTHER"
    assert operation_of("") == "OTHER"
