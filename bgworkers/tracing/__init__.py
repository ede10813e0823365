"""OpenTelemetry tracing of bgworkers' messages and I/O: optional, off unless the ``OTEL_*``
variables ask for it (docs/tracing.md).

Why first party: dramatiq has no tracing of its own, and instrumenting it from outside means
patching its private classes. :mod:`.config` says when tracing is on; the middleware
(:mod:`bgworkers.middleware.tracing`) makes the send and process spans, carrying their context
in the message (:mod:`.carrier`); :mod:`.spans` makes the outbox's and our own I/O's (SMTP,
HTTP, SQL). Nothing here imports OpenTelemetry (the ``tracing`` extra) while tracing is off.
"""

from bgworkers.tracing.config import configure_tracing, tracing_requested

__all__ = ["configure_tracing", "tracing_requested"]
