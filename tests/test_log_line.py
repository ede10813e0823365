"""``log_line``'s short path writes the very line the structlog and logging path writes."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from bgworkers.logs.loggers import (
    bind_context,
    clear_context,
    configure_logging,
    log_line,
    reset_logging,
)

NAME = "bgworkers.test_log_line"


@contextlib.contextmanager
def alone_on_root() -> Iterator[None]:
    """bgworkers' handler alone on the root logger, as in a worker process. pytest adds its
    capture handlers for each phase of a test (which make every line take the long path),
    so they are set aside in the test's body."""
    root = logging.getLogger()
    others = [h for h in root.handlers if not getattr(h, "_bgworkers", False)]
    for handler in others:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in others:
            root.addHandler(handler)


@pytest.fixture
def only_our_handler() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(log_format="json", level="INFO", stream=stream)
    with alone_on_root():
        yield stream
    reset_logging()
    clear_context()


def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    stream.seek(0)
    stream.truncate()
    return lines


CASES: list[tuple[int, dict[str, Any]]] = [
    (logging.INFO, {"outcome": "succeeded", "duration_s": 0.000123}),
    (logging.WARNING, {"outcome": "retried", "error": "token=abc123 in reply", "reason": None}),
    (logging.ERROR, {"outcome": "dead_lettered", "smtp_password": "hunter2", "n": 10**30}),
    (logging.INFO, {"note": "café ünïcode", "queue": "overridden by the field"}),
    (logging.INFO, {"url": "amqp://guest:secret@host/vhost", "items": [1, "two", {"k": "v"}]}),
]


@pytest.mark.parametrize(("level", "fields"), CASES)
def test_the_short_path_writes_the_long_paths_line(
    only_our_handler: io.StringIO, level: int, fields: dict[str, Any]
) -> None:
    bind_context(message_id="m-1", actor="send_email", queue="email", retries=2)
    with alone_on_root():
        log_line(NAME, level, "message_processed", **dict(fields))
    [short] = lines_of(only_our_handler)
    blocker = logging.NullHandler()  # a handler on the way: the record must be made
    logging.getLogger(NAME).addHandler(blocker)
    try:
        log_line(NAME, level, "message_processed", **dict(fields))
    finally:
        logging.getLogger(NAME).removeHandler(blocker)
    [long] = lines_of(only_our_handler)
    assert list(short) == list(long)  # same keys in the same order
    short.pop("timestamp"), long.pop("timestamp")
    assert short == long


def test_the_short_path_makes_no_log_record(
    only_our_handler: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[logging.LogRecord] = []
    original = logging.Logger.makeRecord

    def counting(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = original(self, *args, **kwargs)
        made.append(record)
        return record

    monkeypatch.setattr(logging.Logger, "makeRecord", counting)
    with alone_on_root():
        log_line(NAME, logging.INFO, "message_processed", outcome="succeeded")
    assert made == []
    assert lines_of(only_our_handler)[0]["outcome"] == "succeeded"


def test_an_applications_handler_still_gets_a_record(only_our_handler: io.StringIO) -> None:
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    extra = Collect()
    with alone_on_root():
        logging.getLogger().addHandler(extra)
        try:
            log_line(NAME, logging.INFO, "message_processed", outcome="succeeded")
        finally:
            logging.getLogger().removeHandler(extra)
    assert len(records) == 1
    assert lines_of(only_our_handler)[0]["event"] == "message_processed"


def test_a_disabled_level_writes_nothing(only_our_handler: io.StringIO) -> None:
    with alone_on_root():
        log_line(NAME, logging.DEBUG, "message_processed", outcome="succeeded")
    assert lines_of(only_our_handler) == []


def test_without_bgworkers_handler_the_line_goes_to_the_application() -> None:
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(NAME)
    collect = Collect()
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    try:
        log_line(NAME, logging.INFO, "message_processed", outcome="succeeded")
    finally:
        logger.removeHandler(collect)
        logger.setLevel(logging.NOTSET)
    [record] = records
    assert record.getMessage() == "event='message_processed' outcome='succeeded'"


def test_our_handlers_own_level_and_filters_still_apply(only_our_handler: io.StringIO) -> None:
    [ours] = [h for h in logging.getLogger().handlers if getattr(h, "_bgworkers", False)]
    ours.setLevel(logging.WARNING)
    with alone_on_root():
        log_line(NAME, logging.INFO, "message_processed", outcome="succeeded")
    ours.setLevel(logging.NOTSET)
    drop_all = logging.Filter("nothing.matches.this")
    ours.addFilter(drop_all)
    with alone_on_root():
        log_line(NAME, logging.INFO, "message_processed", outcome="succeeded")
    ours.removeFilter(drop_all)
    assert lines_of(only_our_handler) == []
