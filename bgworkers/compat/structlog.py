"""structlog 26.1 beyond its public API (pinned exactly in pyproject.toml).

Why: ``ProcessorFormatter.format`` copies each record and formats it twice; for bgworkers'
own records our formatter renders the event dict once (see
:class:`bgworkers.logs.loggers._LineFormatter`). It reads what ``wrap_for_formatter`` puts
on the record, and falls back to structlog's own ``format`` for every other record.
"""

from __future__ import annotations

import logging
from typing import Any

from bgworkers.compat import PrivateUse


def structlog_source(record: logging.LogRecord) -> tuple[Any, str, dict[str, Any]] | None:
    """``(logger, method name, event dict)`` of a record made by a structlog logger, else
    None."""
    logger = getattr(record, "_logger", None)
    method = getattr(record, "_name", None)
    if logger is None or not isinstance(method, str) or not isinstance(record.msg, dict):
        return None
    return logger, method, record.msg


USES: tuple[PrivateUse, ...] = (
    PrivateUse(
        "structlog.stdlib:ProcessorFormatter.format",
        used_by="bgworkers.logs.loggers._LineFormatter.format",
        why="overridden: bgworkers' own records rendered without structlog's copy of the "
        "record and second pass through logging.Formatter",
        recheck="diff structlog's format with what _LineFormatter skips (the record copy, "
        "remove_processors_meta, exception handling) and carry any fix over",
        signature="(self, record: 'logging.LogRecord') -> 'str'",
        source_sha256="543ce19a1c6bfb97",
    ),
    PrivateUse(
        "structlog.stdlib:ProcessorFormatter.wrap_for_formatter",
        used_by="bgworkers.compat.structlog.structlog_source",
        why="the record attributes _logger and _name it sets (through extra) tell our "
        "records apart",
        recheck="that wrap_for_formatter still passes the logger and method name as "
        "extra={'_logger': ..., '_name': ...}",
        source_sha256="fc9fd0587c3098b4",
    ),
)
