"""When tracing is on, and the tracer provider of bgworkers' own processes (docs/tracing.md,
"Set-up": the ``OTEL_*`` variables that turn it on; every other one is the SDK's own).

The processes bgworkers starts install the SDK's tracer provider (:func:`configure_tracing`).
An application that imports bgworkers keeps its own provider: bgworkers' spans go wherever the
application sends its own, and nowhere when it has none.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

from bgworkers.errors import ConfigurationError

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_NO_EXTRA = (
    "OTEL_*: traces are configured but install the tracing extra: pip install 'bgworkers[tracing]'"
)


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` variables of ``environ`` (default: this process's) ask for traces."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return any(env.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


@functools.cache
def tracing_on() -> bool:
    """Whether this process traces (checked once; the I/O hooks ask per call): the ``OTEL_*``
    variables ask for it and the OpenTelemetry API is installed (else an application keeps
    working untraced; bgworkers' own processes refuse to start, :func:`require_extra`)."""
    if not tracing_requested():
        return False
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


def require_extra() -> None:
    """Raise :class:`ConfigurationError` if traces are asked for but cannot be sent."""
    if tracing_requested() and not tracing_on():
        raise ConfigurationError(_NO_EXTRA)


def configure_tracing(service_name: str) -> bool:
    """Install the SDK's tracer provider with the OTLP/HTTP exporter when tracing is on.

    For bgworkers' own processes (and an application that wants bgworkers to do it):
    ``service_name`` is used unless ``OTEL_SERVICE_NAME`` says otherwise. Does nothing when
    tracing is off or a provider is already installed; returns whether one is installed now.
    """
    require_extra()
    if not tracing_on():
        return False
    from opentelemetry import trace

    # The API's default is a proxy (or no-op) provider; anything with span processors is real.
    if hasattr(trace.get_tracer_provider(), "add_span_processor"):
        return True
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigurationError(_NO_EXTRA) from None
    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def flush_tracing(timeout_ms: int = 5_000) -> None:
    """Export the spans still queued (a worker process calls it before it exits)."""
    if not tracing_on():
        return
    from opentelemetry import trace

    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:
        flush(timeout_ms)
