"""Benchmark: what tracing costs per message, in one thread, off and on.

Off, bgworkers installs no tracing middleware: what remains per message is the envelope check
of the three trace-context options (``traceparent``, ``tracestate``, ``bgw_first_attempt``),
timed here as the check of a typical retried message's options with and without those three
entries in :data:`bgworkers.brokers.envelope.OPTION_CHECKS`.

On, the figure is the tracing middleware's hooks around one message, as a worker runs them:
the producer's ``before_enqueue``/``after_enqueue`` (the send span, its context injected) and
the consumer's ``before_process_message``/``after_process_message`` (the process span,
current while it runs), with the SDK's tracer provider and batch span processor, in three
variants: spans dropped by the sampler (``OTEL_TRACES_SAMPLER=always_off``), spans recorded
and handed to an exporter that drops them, and spans recorded and encoded to OTLP protobuf
as the OTLP/HTTP exporter does before posting them (no network).

Touches no broker, database or file. Prints the figures and ends with ``name=value`` lines
(microseconds per message, net of making the message itself).

    python bench/tracing_overhead.py [--messages 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler

from bgworkers.brokers import envelope
from bgworkers.middleware.tracing import Tracing


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class EncodeExporter(SpanExporter):
    """Encodes each batch as the OTLP/HTTP exporter does, then drops it."""

    def __init__(self) -> None:
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializePartialToString())
        return SpanExportResult.SUCCESS


def per_message_us(run: Callable[[], None], messages: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(messages):
            run()
        best = min(best, time.perf_counter() - started)
    return best / messages * 1e6


def baseline() -> None:
    """What every variant also does: make the message and its proxy (subtracted)."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="email", actor_name="send_email", args=(42,), kwargs={}, options={}
    )
    MessageProxy(message)


def tracing_hooks(sampler: Sampler, exporter: SpanExporter) -> tuple[Callable[[], None], Any]:
    provider = TracerProvider(sampler=sampler)
    processor = BatchSpanProcessor(exporter, max_queue_size=65_536, max_export_batch_size=512)
    provider.add_span_processor(processor)
    tracing = Tracing(tracer_provider=provider)
    broker = StubBroker()

    def one_message() -> None:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name="email", actor_name="send_email", args=(42,), kwargs={}, options={}
        )
        tracing.before_enqueue(broker, message, None)
        tracing.after_enqueue(broker, message, None)
        proxy = MessageProxy(message)
        tracing.before_process_message(broker, proxy)
        tracing.after_process_message(broker, proxy, result=None)

    return one_message, provider


def option_check(with_trace_options: bool) -> Callable[[], None]:
    options = {"retries": 1, "requeue_timestamp": 1_700_000_000_000, "traceback": "x" * 200}
    checks = dict(envelope.OPTION_CHECKS)
    if not with_trace_options:
        for name in ("traceparent", "tracestate", "bgw_first_attempt"):
            checks.pop(name)

    def check() -> None:
        for name, (_, is_valid) in checks.items():
            if name in options and not is_valid(options[name]):
                raise AssertionError(name)

    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, float] = {}
    before = per_message_us(option_check(False), args.messages * 10, args.repeat)
    after = per_message_us(option_check(True), args.messages * 10, args.repeat)
    figures["off_option_checks_us"] = after - before
    encoder = EncodeExporter()
    base = per_message_us(baseline, args.messages, args.repeat)
    for name, sampler, exporter in (
        ("on_sampled_out_us", ALWAYS_OFF, DropExporter()),
        ("on_recorded_us", ALWAYS_ON, DropExporter()),
        ("on_recorded_encoded_us", ALWAYS_ON, encoder),
    ):
        run, provider = tracing_hooks(sampler, exporter)
        figures[name] = per_message_us(run, args.messages, args.repeat) - base
        started = time.perf_counter()
        provider.shutdown()  # exports what is queued: the export thread's share, timed apart
        figures[name.replace("_us", "_flush_s")] = time.perf_counter() - started
    print(f"{args.messages} messages (send + process span each), best of {args.repeat}")
    per_span = encoder.bytes / (args.messages * args.repeat * 2)
    print(f"OTLP bytes encoded: {encoder.bytes:,} ({per_span:.0f} per span)")
    for name, value in figures.items():
        print(f"{name}={value:.3f}" if name.endswith("_s") else f"{name}={value:.2f}")


if __name__ == "__main__":
    main()
