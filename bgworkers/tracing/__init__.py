"""OpenTelemetry tracing of bgworkers' messages and I/O: optional, off unless configured.

Why first party: dramatiq has no tracing of its own, and instrumenting it from outside means
patching its private classes. Here one dramatiq middleware
(:mod:`bgworkers.middleware.tracing`, with the other middleware) makes the spans the
OpenTelemetry messaging conventions describe — a producer span where a message is
sent, a consumer span that is current while the actor runs, retries linked to the first
attempt — and small hooks add the outbox (:mod:`.outbox`) and our own I/O (:mod:`.spans`:
SMTP, HTTP).

Off unless the standard ``OTEL_*`` variables ask for it (:func:`tracing_requested`); then
the middleware is not installed and the I/O hooks cost one cached check. The ``tracing``
extra (``pip install 'bgworkers[tracing]'``) brings the OpenTelemetry packages; nothing here
imports them while tracing is off.
"""

from bgworkers.tracing.config import configure_tracing, tracing_requested

__all__ = ["configure_tracing", "tracing_requested"]
