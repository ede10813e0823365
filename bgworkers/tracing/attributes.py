"""Span names and attributes, after OpenTelemetry's messaging semantic conventions.

Only ids, names and counts: never a message's arguments, an address, a URL path or query, or
an error text that has not been through :func:`bgworkers.logs.redaction.redact_text`.
"""

from __future__ import annotations

from typing import Any, Final

from dramatiq.common import q_name

from bgworkers.logs.redaction import redact_text

SYSTEM: Final = "rabbitmq"
#: Characters of a (redacted) error text kept in a span's status.
MAX_ERROR_CHARS: Final = 300


def message_attributes(
    operation: str, operation_type: str, queue_name: str, message_id: str, actor: str
) -> dict[str, Any]:
    """The attributes every span about one message has."""
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.name": operation,
        "messaging.operation.type": operation_type,
        "messaging.destination.name": q_name(queue_name),
        "messaging.message.id": message_id,
        "bgworkers.actor": actor,
    }


def span_name(operation: str, queue_name: str) -> str:
    """``{operation} {queue}``, as the conventions name messaging spans."""
    return f"{operation} {q_name(queue_name)}"


def error_text(exception: BaseException) -> str:
    """``Type: text`` with secrets scrubbed, cut to :data:`MAX_ERROR_CHARS`."""
    return redact_text(f"{type(exception).__name__}: {exception}")[:MAX_ERROR_CHARS]
