"""bgworkers' own log lines render as structlog's formatter renders them, outside the lock."""

from __future__ import annotations

import io
import logging
import sys

import structlog

from bgworkers.logs import _LineFormatter, _PipeTolerantHandler, redact_secrets


def own_record(event_dict: dict[str, object]) -> logging.LogRecord:
    logger = logging.getLogger("bgworkers.test")
    args, kwargs = structlog.stdlib.ProcessorFormatter.wrap_for_formatter(
        logger, "info", event_dict
    )
    return logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, args[0], (), None, extra=kwargs["extra"]
    )


def formatters() -> tuple[logging.Formatter, logging.Formatter]:
    own = [structlog.processors.format_exc_info, redact_secrets]
    renderer = structlog.processors.JSONRenderer()
    ours = _LineFormatter(foreign_pre_chain=[], own_processors=[*own, renderer])
    structlogs = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *own, renderer],
    )
    return ours, structlogs


def test_an_own_line_renders_exactly_as_structlogs_formatter_renders_it() -> None:
    ours, structlogs = formatters()
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    for event_dict in (
        {"event": "message_processed", "outcome": "succeeded", "duration_s": 0.001},
        {"event": "x", "broker_url": "amqp://guest:secret@host/", "smtp_password": "p"},
        {"event": "failed", "exc_info": exc_info},
    ):
        assert ours.format(own_record(dict(event_dict))) == structlogs.format(
            own_record(dict(event_dict))
        )


def test_a_foreign_line_still_takes_structlogs_path() -> None:
    ours, structlogs = formatters()
    record = logging.LogRecord("pika", logging.WARNING, __file__, 1, "lost %s", ("x",), None)
    assert ours.format(record) == structlogs.format(record) == '{"event": "lost x"}'


class BrokenFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        raise RuntimeError("cannot render")


def test_a_line_that_cannot_be_rendered_is_reported_not_raised() -> None:
    stream = io.StringIO()
    handler = _PipeTolerantHandler(stream)
    handler.setFormatter(BrokenFormatter())
    reported: list[logging.LogRecord] = []
    handler.handleError = reported.append  # type: ignore[method-assign]
    record = logging.LogRecord("bgworkers", logging.INFO, __file__, 1, "hello", (), None)
    assert handler.handle(record)
    assert reported == [record]
    assert stream.getvalue() == ""


def test_a_filtered_line_is_not_written() -> None:
    stream = io.StringIO()
    handler = _PipeTolerantHandler(stream)
    handler.addFilter(lambda record: record.name != "quiet")
    assert not handler.handle(logging.LogRecord("quiet", logging.INFO, __file__, 1, "x", (), None))
    assert handler.handle(logging.LogRecord("loud", logging.INFO, __file__, 1, "y", (), None))
    assert stream.getvalue() == "y\n"
