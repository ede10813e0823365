"""Rate-limit the libraries' repeated lines while RabbitMQ is away (docs/architecture.md).

Why: with the broker down, pika logs four lines (one with a traceback) per connection attempt
and dramatiq's consumers retry every 3 s each, queue by queue: about 1,000 lines in 20 s that
bury bgworkers' own ``broker_unreachable`` line. This filter lets the first line of each kind
through, then at most one per ``interval_s`` per kind, carrying how many were held back; a
traceback (the record's, or the one pika writes in its text after "Caller's stack:") becomes
the exception's one-line text. bgworkers' own lines are never filtered (they are written to be
one per condition and interval already).

A "kind" is the logger (queue suffixes like ``ConsumerThread(email)`` folded), the level and
the message template before its arguments: "Connection workflow failed: %r" is one kind
whatever the address or error in it. Two kinds are rewritten. A message that failed because
the database did not answer is one WARNING naming the fix (the message is retried), without
the statement and its parameters. A lost connection that dramatiq recovers from on its own
(reset by the peer, a broken pipe, an unexpected EOF) is one WARNING, not pika's three ERROR
lines or dramatiq's CRITICAL, naming the node (``host:port``: the peer in pika's text, else the
configured node(s); never a user or password) and the reason in one line.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence

from bgworkers.logs.failure_reasons import database_error_line
from bgworkers.logs.intervals import LogIntervalsByKey

#: Loggers whose repeated lines are rate-limited (prefixes).
NOISY_LOGGERS = ("pika", "dramatiq.worker.ConsumerThread", "dramatiq.broker", "dramatiq.brokers")
_QUEUE_SUFFIX = re.compile(r"\(.*\)$")
#: Where a traceback starts inside a library's message text.
_TEXT_TRACEBACK = re.compile(r"[;:]?\s*(?:Caller's stack:|Traceback \(most recent call last\))")
#: Exceptions of a database that does not answer (SQLAlchemy's and psycopg's).
_DATABASE_AWAY = frozenset({"OperationalError", "InterfaceError"})
#: What a lost connection's line says, whichever library writes it.
_CONNECTION_LOSS = re.compile(
    "Connection reset by peer|ConnectionResetError|StreamLostError|Broken pipe|BrokenPipeError"
    "|Transport indicated EOF|Socket EOF"
)
#: The peer of a socket in pika's text: ``raddr=('127.0.0.1', 5672)``.
_PEER = re.compile(r"raddr=\('([^']{1,255})', (\d{1,5})\)")
#: Where the exception's own text starts in a library's line ("...error: StreamLostError: ...").
_EXCEPTION_TEXT = re.compile(r"\b\w*(?:Error|Exception)\b[^;]*")


class LibraryNoiseFilter(logging.Filter):
    """One line per kind and interval for :data:`NOISY_LOGGERS`; others pass untouched."""

    def __init__(
        self,
        *,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        broker_nodes: Sequence[str] = (),
    ) -> None:
        """``broker_nodes``: ``host:port`` of each configured RabbitMQ node, named by a lost
        connection's line when the library's text does not say which node it was."""
        super().__init__()
        self.interval_s = interval_s
        self.broker_nodes = " or ".join(broker_nodes) or "unknown"
        self._notices = LogIntervalsByKey(interval_s, clock=clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(NOISY_LOGGERS) and not _database_away(record):
            return True
        notices = self._notices.of(_kind(record))
        if not notices.due():
            return False
        _shorten(record, notices.held_back, self.interval_s, self.broker_nodes)
        return True


def _kind(record: logging.LogRecord) -> tuple[str, int, str]:
    """The kind of a line: a lost connection is one kind whichever library line says it (pika
    writes three for one reset: the transport, the connection, the channel's caller)."""
    if record.levelno > logging.WARNING and _CONNECTION_LOSS.search(_head(record)):
        return ("", logging.WARNING, "broker connection lost")
    return (_QUEUE_SUFFIX.sub("", record.name), record.levelno, str(record.msg)[:200])


def _head(record: logging.LogRecord) -> str:
    """The line's own text, without a traceback, with its exception's one-line text."""
    message = record.getMessage()
    in_text = _TEXT_TRACEBACK.search(message)
    if in_text is not None:
        message = message[: in_text.start()]
    exc = record.exc_info[1] if record.exc_info else None
    return f"{message} ({type(exc).__name__}: {exc})" if exc is not None else message


def _database_away(record: logging.LogRecord) -> bool:
    """dramatiq's "Failed to process message" for an error of a database that does not answer:
    the same traceback for every message while it is away (bgworkers' ``message_processed``
    line still reports each message)."""
    exc = record.exc_info[1] if record.exc_info else None
    return (
        exc is not None
        and record.name.startswith("dramatiq.worker.WorkerThread")
        and type(exc).__name__ in _DATABASE_AWAY
        and type(exc).__module__.startswith(("sqlalchemy", "psycopg"))
    )


def _shorten(record: logging.LogRecord, held: int, interval_s: float, nodes: str) -> None:
    """Fold a traceback into the message and say how many similar lines were held back."""
    full, message = record.getMessage(), _head(record)
    exc = record.exc_info[1] if record.exc_info else None
    if exc is not None and _database_away(record):  # (exc checked again for the type checker)
        record.levelno, record.levelname = logging.WARNING, "WARNING"  # the message is retried
        message = _database_did_not_answer(full, exc)
    record.exc_info = record.exc_text = None
    if record.levelno > logging.WARNING and _CONNECTION_LOSS.search(message):
        record.levelno, record.levelname = logging.WARNING, "WARNING"  # dramatiq reconnects
        message = _connection_lost(message, full, exc, nodes)
    if held:
        message = f"{message} [{held} similar line(s) in the last {interval_s:g} s not shown]"
    record.msg, record.args = message, None


def _database_did_not_answer(full: str, exc: BaseException) -> str:
    """One line for a message that failed because the database did not answer: what, the
    driver's first line (never the statement or its parameters) and the fix."""
    action, first = full.split(" with unhandled exception", 1)[0], database_error_line(exc)[1]
    return (
        f"{action}: the database did not answer ({type(exc).__name__}: {first}); "
        "the message is retried; start the database or fix BGW_DATABASE_URL"
    )


def _connection_lost(message: str, full: str, exc: BaseException | None, nodes: str) -> str:
    """One line naming the node and the reason of a lost connection dramatiq recovers from."""
    peer = _PEER.search(full)
    node = f"{peer[1]}:{peer[2]}" if peer else nodes
    if exc is not None:
        reason = f"{type(exc).__name__}: {exc}"
    else:
        found = _EXCEPTION_TEXT.search(message)
        reason = found[0] if found else message
    return f"RabbitMQ connection to {node} lost ({reason.strip()[:300]}); dramatiq reconnects"
