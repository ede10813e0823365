"""The tracing middleware on the stub broker, and when tracing is on: no broker, no exporter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bgworkers.brokers.rabbitmq import StackStubBroker
from bgworkers.errors import PermanentError
from bgworkers.logs.loggers import get_logger
from bgworkers.middleware.tracing import Tracing
from bgworkers.settings import get_settings
from bgworkers.stack.broker import middleware_stack
from bgworkers.tracing import carrier
from bgworkers.tracing.config import tracing_requested
from bgworkers.tracing.spans import use_tracer
from tests.platform_helpers import captured_json_logs, running_worker, wait_for


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
    ],
)
def test_tracing_is_on_only_when_an_exporter_is_configured(
    environ: dict[str, str], expected: bool
) -> None:
    assert tracing_requested(environ) is expected


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def broker(provider: TracerProvider) -> Iterator[dramatiq.Broker]:
    stub = StackStubBroker(
        middleware=[Tracing(tracer_provider=provider), *middleware_stack(get_settings())]
    )
    stub.emit_after("process_boot")
    previous = dramatiq.get_broker()
    dramatiq.set_broker(stub)
    yield stub
    dramatiq.set_broker(previous)
    stub.close()


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_a_retry_is_a_new_consumer_span_linked_to_the_first(
    broker: dramatiq.Broker, exporter: InMemorySpanExporter
) -> None:
    seen: list[str | None] = []

    @dramatiq.actor(queue_name="traced", max_retries=3, min_backoff=10, max_backoff=20)
    def flaky(token: str) -> None:
        seen.append(carrier.traceparent_of(trace.get_current_span().get_span_context()))
        if len(seen) == 1:
            raise RuntimeError("password=hunter2 refused")

    broker.declare_actor(flaky)
    flaky.send("s3cret-argument")
    with running_worker(broker):
        wait_for(lambda: len(spans_named(exporter, "process traced")) == 2, what="two attempts")
    [send] = spans_named(exporter, "send traced")
    first, second = sorted(spans_named(exporter, "process traced"), key=lambda s: s.start_time)
    assert send.kind is SpanKind.PRODUCER and send.parent is None
    for attempt in (first, second):
        assert attempt.kind is SpanKind.CONSUMER
        assert attempt.parent is not None and attempt.parent.span_id == send.context.span_id
        assert attempt.context.trace_id == send.context.trace_id
    # Current while the actor ran:
    assert seen == [carrier.traceparent_of(s.context) for s in (first, second)]
    assert first.attributes["bgworkers.outcome"] == "retried"
    assert first.status.status_code is StatusCode.ERROR
    assert "hunter2" not in (first.status.description or "")
    assert second.attributes["bgworkers.outcome"] == "succeeded"
    assert [link.context.span_id for link in second.links] == [
        send.context.span_id,
        first.context.span_id,
    ]
    for span in exporter.get_finished_spans():
        assert "s3cret-argument" not in repr(dict(span.attributes or {}))


def test_a_permanent_error_is_dead_lettered_with_its_reason(
    broker: dramatiq.Broker, exporter: InMemorySpanExporter
) -> None:
    @dramatiq.actor(queue_name="traced")
    def refused() -> None:
        raise PermanentError("no such thing")

    broker.declare_actor(refused)
    refused.send()
    with running_worker(broker):
        wait_for(lambda: bool(spans_named(exporter, "process traced")), what="the attempt")
    [attempt] = spans_named(exporter, "process traced")
    assert attempt.attributes["bgworkers.outcome"] == "dead_lettered"
    assert attempt.attributes["bgworkers.reason"] == "permanent_error"
    assert attempt.attributes["error.type"] == "PermanentError"
    assert attempt.status.status_code is StatusCode.ERROR


def test_a_message_sent_inside_a_span_is_its_child(
    broker: dramatiq.Broker, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    @dramatiq.actor(queue_name="traced")
    def noop() -> None:
        return None

    broker.declare_actor(noop)
    tracer = trace.get_tracer("test", tracer_provider=provider)
    with tracer.start_as_current_span("request") as request:
        message = noop.send()
    [send] = spans_named(exporter, "send traced")
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert send.attributes["messaging.message.id"] == message.message_id
    assert message.options[carrier.TRACEPARENT] == carrier.traceparent_of(send.context)


def test_the_runs_log_lines_carry_its_trace_id(
    broker: dramatiq.Broker, exporter: InMemorySpanExporter
) -> None:
    @dramatiq.actor(queue_name="traced")
    def logged() -> None:
        get_logger("bgworkers.test").info("doing_work")

    broker.declare_actor(logged)
    with captured_json_logs() as logs, running_worker(broker):
        logged.send()
        broker.join("traced")
    [send] = spans_named(exporter, "send traced")
    lines = [line for line in logs if line["event"] in {"doing_work", "message_processed"}]
    assert len(lines) == 2
    assert {line["trace_id"] for line in lines} == {f"{send.context.trace_id:032x}"}


class Refused(dramatiq.middleware.MiddlewareError):
    pass


class RefuseFirstSend(dramatiq.Middleware):
    def __init__(self) -> None:
        self.refused = False

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: Any) -> None:
        if not self.refused:
            self.refused = True
            raise Refused("broker away")


def test_a_send_that_failed_ends_its_span_as_not_sent(provider: TracerProvider) -> None:
    stub = StackStubBroker(middleware=[Tracing(tracer_provider=provider), RefuseFirstSend()])
    exporter = provider._active_span_processor._span_processors[0].span_exporter  # type: ignore[attr-defined]

    @dramatiq.actor(queue_name="traced", broker=stub)
    def noop() -> None:
        return None

    with pytest.raises(Refused):
        noop.send()
    noop.send()  # as the scheduler does after a failed send: a new message
    first, second = sorted(spans_named(exporter, "send traced"), key=lambda s: s.start_time)
    assert first.status.status_code is StatusCode.ERROR and first.status.description == "not sent"
    assert second.status.status_code is StatusCode.UNSET


WITHOUT_EXTRA = """
import sys
sys.modules["opentelemetry"] = None  # as if the tracing extra were not installed
sys.modules["opentelemetry.trace"] = None
if sys.argv[1:] == ["worker"]:
    import dramatiq.cli  # noqa: F401 - loaded first in a worker process of dramatiq's CLI
import bgworkers.email.api
print("imported")
"""


def test_traces_asked_for_without_the_extra_stop_a_worker_not_an_application() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9/"}
    for who, expected_code, expected in (
        ("application", 0, "imported"),
        ("worker", 2, "bgworkers: OTEL_*: traces are configured but install the tracing extra"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", WITHOUT_EXTRA, who],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == expected_code, done.stderr
        assert expected in done.stdout + done.stderr
        assert "Traceback" not in done.stderr


@pytest.fixture
def own_spans(provider: TracerProvider) -> Iterator[None]:
    """bgworkers' client and outbox spans made on the in-memory provider."""
    use_tracer(provider.get_tracer("bgworkers"))
    yield
    use_tracer(None)


def test_an_http_request_is_a_client_span_without_path_or_query(
    own_spans: None, exporter: InMemorySpanExporter
) -> None:
    import httpx

    from bgworkers.sync.http import _send_once

    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503)))
    request = client.build_request(
        "GET",
        "https://www.googleapis.com/calendar/v3/calendars/ada@example.org/events?syncToken=s3cret",
        headers={"Authorization": "Bearer t0ken"},
    )
    response = _send_once(client, request, operation="calendar events.list", provider="google")
    assert response.status_code == 503
    [span] = exporter.get_finished_spans()
    assert (span.name, span.kind) == ("GET", SpanKind.CLIENT)
    attributes = dict(span.attributes or {})
    assert attributes["server.address"] == "www.googleapis.com"
    assert attributes["http.response.status_code"] == 503
    assert span.status.status_code is StatusCode.ERROR
    assert attributes["bgworkers.operation"] == "calendar events.list"
    text = repr(attributes)
    assert "s3cret" not in text and "ada@example.org" not in text and "t0ken" not in text
