"""A failure's reason in one short line, for a WARNING or ERROR line of ours.

Why: ``str()`` of a SQLAlchemy error is several lines: the driver's message, then the
statement (``[SQL: ...]``) and its values (``[parameters: ...]``). Those values are what our
users wrote (addresses, reminder texts), and a batch's statement can run to kilobytes, so a
line that renders the error whole leaks content into the logs and buries the reason. What an
operator needs is the driver's error class and the first line of its message.
"""

from __future__ import annotations

import re

#: Characters kept of a reason's text.
MAX_REASON_CHARS = 300
#: SQLAlchemy's "(Background on this error at: https://sqlalche.me/...)" suffix.
_BACKGROUND = re.compile(r"\s*\(Background on this \w+ at: \S+\)")


def failure_reason(exc: BaseException) -> str:
    """``Type: text`` of a failure, one line, never an empty reason.

    A SQLAlchemy error gives the driver's error (``UndefinedTable: relation "x" does not
    exist``): its class and first message line, never the statement or its parameters.
    pika raises some connection errors without a text (``AMQPConnectionError()``): the text of
    the exception it came from is used then, else the line says that none was given.
    """
    if type(exc).__module__.startswith("sqlalchemy."):
        return _database_reason(exc)
    origin = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    text = str(exc) or str(origin or "")
    return f"{type(exc).__name__}: {text}" if text else f"{type(exc).__name__} (no reason given)"


def _database_reason(exc: BaseException) -> str:
    """``Class: first line`` of the driver's error (see :func:`database_error_line`)."""
    name, first = database_error_line(exc)
    return f"{name}: {first}" if first else f"{name} (no reason given)"


def database_error_line(exc: BaseException) -> tuple[str, str]:
    """The class name and first line of the driver's error when SQLAlchemy wraps one
    (``orig``), else of SQLAlchemy's own (whose first line never holds the statement:
    SQLAlchemy appends that on lines of its own); the line is "" when the error has no text."""
    orig = getattr(exc, "orig", None)
    source = orig if isinstance(orig, BaseException) else exc
    lines = _BACKGROUND.sub("", str(source)).strip().splitlines()
    return type(source).__name__, lines[0].strip()[:MAX_REASON_CHARS] if lines else ""


def error_text(exc: BaseException) -> str:
    """The ``error`` field of a line that also carries ``error_type``: a database error's
    short reason (:func:`failure_reason`), any other error's own text, cut to 500 characters."""
    if type(exc).__module__.startswith("sqlalchemy."):
        return _database_reason(exc)
    return str(exc)[:500]
