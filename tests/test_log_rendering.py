"""bgworkers' own log lines render as structlog's formatter renders them, outside the lock."""

from __future__ import annotations

import io
import logging
import sys

import structlog

from bgworkers.logs.loggers import _LineFormatter, _PipeTolerantHandler, redact_secrets


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


def test_json_lines_carry_the_standard_encoders_content() -> None:
    """orjson renders the common line; every line parses to what json.dumps would have said."""
    import dataclasses
    import json
    from datetime import UTC, datetime

    from bgworkers.logs.loggers import render_json

    @dataclasses.dataclass
    class Point:
        x: int

    cases: list[dict[str, object]] = [
        {"event": "message_processed", "outcome": "succeeded", "duration_s": 0.000123, "n": 0},
        {"event": "x", "when": datetime(2026, 12, 1, tzinfo=UTC), "p": Point(1), "s": {1, 2}},
        {"event": "non-ascii", "name": "Zoë ☃"},  # standard library: ASCII-escaped
        {"event": "big", "n": 2**70, 3: "an int key"},
        {"event": "surrogate", "text": "\udc80"},
        {"event": "nested", "items": [1, 2.5, None, True, {"a": "b"}]},
    ]
    for event_dict in cases:
        line = render_json(None, "info", dict(event_dict))
        expected = json.dumps(event_dict, default=repr)
        assert json.loads(line) == json.loads(expected), event_dict
        assert line.isascii()
    assert render_json(None, "info", {"name": "Zoë"}) == json.dumps({"name": "Zoë"})


def test_redaction_shortcuts_decide_as_the_full_path() -> None:
    """redact_secrets' shortcuts (numbers, short plain strings) give redact_value's answers."""
    from bgworkers.logs.redaction import MAX_FIELD_CHARS, redact_value

    event_dict: dict[str, object] = {
        "token": 5,
        "api_key": "abc",
        "password": None,
        "retries": 0,
        "duration_s": 0.5,
        "ok": True,
        "queue": "maintenance",
        "url": "https://user:hunter2@host/x?sig=abcdef",
        "error": "login failed: password=hunter2",
        "long": "x" * (MAX_FIELD_CHARS + 10),
        "args": ["Bearer abc.def", {"secret": "s"}],
        "exception": "Traceback ...\nValueError: token=abc",
    }
    expected = {key: redact_value(key, value) for key, value in event_dict.items()}
    expected["exception"] = "Traceback ...\nValueError: token=***"
    assert redact_secrets(None, "info", dict(event_dict)) == expected
    assert expected["token"] == "***" and expected["url"] == "https://user:***@host/x?sig=***"
