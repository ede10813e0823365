"""Logging: bgworkers' loggers, and the JSON (or console) set-up of bgworkers' own processes.

Two situations, on purpose:

- **Imported by an application**, bgworkers changes no handler, level or structlog setting:
  its ``bgworkers.*`` loggers have a processor chain of their own (not structlog's global
  configuration) and hand the application's handlers one scrubbed ``event key=value`` line.
- **In the processes bgworkers starts**, :func:`configure_logging` (called once at boot, see
  :mod:`bgworkers.processes.boot`) puts one handler on the root logger, so every line on stdout,
  the libraries' included, is JSON (or console text) with the message context bound to it.

Lines go to the process's original stdout (``sys.__stdout__``): dramatiq's CLI points
``sys.stdout`` of its worker processes at a pipe that it copies to stderr, while operators
and container runtimes expect the application's log stream on stdout.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from bgworkers.compat.structlog import structlog_source
from bgworkers.logs.log_noise import LibraryNoiseFilter
from bgworkers.logs.log_writer import BatchedLineWriter

# Redaction lives in its own module (bounded and linear); re-exported for existing callers.
from bgworkers.logs.redaction import (
    MAX_FIELD_CHARS,
    MAX_TRACEBACK_CHARS,
    is_secret_key,
    may_hold_secret,
)
from bgworkers.logs.redaction import REDACTED as REDACTED
from bgworkers.logs.redaction import redact_text as redact_text
from bgworkers.logs.redaction import redact_value as redact_value


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: no password, token or credential reaches the output.

    It runs on every line of every message, so the fields :func:`redact_value` would return
    unchanged (a number; a short text with none of the characters a secret pattern needs) are
    decided here without its calls, and the verdicts on keys and short values (event, level,
    actor, queue, outcome), which repeat from line to line, are remembered.
    """
    for key, value in event_dict.items():  # values replaced in place: the size never changes
        if key == "timestamp":
            continue  # set by TimeStamper just before, never by the caller: digits and ":"
        secret = _SECRET_KEY_VERDICTS.get(key)
        if secret is None:
            secret = _remember(_SECRET_KEY_VERDICTS, key, is_secret_key(key))
        if secret:
            event_dict[key] = redact_value(key, value)
        elif type(value) is str:
            if value in _PLAIN_TEXTS:
                continue
            if len(value) > MAX_FIELD_CHARS or may_hold_secret(value):
                if key == "exception":
                    # A traceback: keep its end (the exception line), bounded like any field.
                    event_dict[key] = redact_text(value, limit=MAX_TRACEBACK_CHARS, keep_end=True)
                else:
                    event_dict[key] = redact_text(value)
            elif len(value) <= _REMEMBERED_TEXT_CHARS:
                _remember(_PLAIN_TEXTS, value, True)
        elif type(value) not in _PLAIN_SCALARS:
            event_dict[key] = redact_value(key, value)
    return event_dict


#: Keys seen, and whether each names a secret; short texts seen that need no redaction.
#: Each is emptied when it reaches :data:`_REMEMBERED_ENTRIES` (message ids never repeat).
_SECRET_KEY_VERDICTS: dict[str, bool] = {}
_PLAIN_TEXTS: dict[str, bool] = {}
_REMEMBERED_ENTRIES = 4096
_REMEMBERED_TEXT_CHARS = 64
_PLAIN_SCALARS: frozenset[type] = frozenset({int, float, bool, type(None)})


def _remember(verdicts: dict[str, bool], text: str, verdict: bool) -> bool:
    if len(verdicts) >= _REMEMBERED_ENTRIES:
        verdicts.clear()
    verdicts[text] = verdict
    return verdict


_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def render_json(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    """The line as JSON: orjson for the common line, the standard library for the rest.

    orjson renders a line in a tenth of the standard encoder's time (``message_processed``
    is written once per message). The content is the standard library's: datetimes and
    dataclasses still go to the repr fallback (as with structlog's JSONRenderer), and a line
    with non-ASCII text, a key that is not a string or an integer beyond 64 bits is rendered
    by ``json.dumps`` (ASCII-escaped), so no stream encoding can refuse it. Only the
    separators are compact.
    """
    try:
        rendered = orjson.dumps(event_dict, default=repr, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: non-str keys, big ints, lone surrogates
        return json.dumps(event_dict, default=repr)
    if not rendered.isascii():
        return json.dumps(event_dict, default=repr)
    return rendered.decode("ascii")


#: The bound context: one variable holding a mapping that is replaced, never changed in place
#: (a copied context, in another thread or task, keeps what it had). structlog's own
#: ``bind_contextvars`` keeps one variable per key, and binding, clearing and merging each
#: walked all of them; the logging middleware binds and clears once per message.
_NO_CONTEXT: dict[str, Any] = {}
_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "bgworkers_log_context", default=_NO_CONTEXT
)


def merge_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the bound context, under the line's own fields (which win)."""
    for key, value in _CONTEXT.get().items():
        event_dict.setdefault(key, value)
    return event_dict


def _drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        merge_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
    ]


class _ProcessState:
    """The handler this process renders through, set by configure_logging (None: bgworkers
    renders as a library)."""

    handler: _PipeTolerantHandler | None = None
    #: The root logger's level before configure_logging changed it (put back by reset_logging).
    root_level: int | None = None


_KEY_VALUE = structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True)


def _hand_to_stdlib(logger: WrappedLogger, method: str, event_dict: EventDict) -> Any:
    """Last step of bgworkers' chain: in bgworkers' own processes, the event dict for the root
    handler's formatter (JSON or console); in an application's process, where no bgworkers
    handler exists, one scrubbed ``event=... k=v`` text for the application's formatter."""
    if _ProcessState.handler is not None:
        return structlog.stdlib.ProcessorFormatter.wrap_for_formatter(logger, method, event_dict)
    for key in ("timestamp", "level", "logger"):
        event_dict.pop(key, None)
    return _KEY_VALUE(logger, method, redact_secrets(logger, method, event_dict))


_CHAIN: list[Processor] = [
    structlog.stdlib.filter_by_level,
    *_shared_processors(),
    structlog.stdlib.PositionalArgumentsFormatter(),
    _hand_to_stdlib,
]


class _PipeTolerantHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that goes quiet once its reader has gone (``bgworkers health | head``)
    instead of printing "--- Logging error ---" with a traceback for every later line.

    It renders a line *before* taking the handler's lock, which it holds only to write: the
    standard handler formats under the lock, so eight worker threads each logging their
    ``message_processed`` line queued behind one another's JSON rendering and redaction. The
    formatter keeps no state between records, so rendering needs no lock.

    With ``batched`` (worker processes), lines below WARNING are written a batch at a time
    (:mod:`bgworkers.logs.log_writer`, which says why and what it costs).
    """

    def __init__(self, stream: TextIO, *, batched: bool = False) -> None:
        super().__init__(stream)
        self._writer = (
            BatchedLineWriter(self._write_batch, self._flush_stream, self.lock)  # type: ignore[arg-type]
            if batched
            else None
        )

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        self._emit(lambda: self.format(record), record.levelno >= logging.WARNING, lambda: record)
        return True

    def write_event(self, logger: logging.Logger, event_dict: EventDict, *, urgent: bool) -> None:
        """Render a structured event (see :func:`log_line`) and write it like a record."""
        formatter = self.formatter
        assert isinstance(formatter, _LineFormatter)
        self._emit(
            lambda: formatter.render_event(logger, event_dict, event_dict["level"]),
            urgent,
            lambda: logging.makeLogRecord({"msg": event_dict, "name": logger.name}),
        )

    def _emit(
        self, render: Callable[[], str], urgent: bool, record: Callable[[], logging.LogRecord]
    ) -> None:
        """Render a line and write it; ``record`` is made only for handleError's report."""
        try:
            line = render() + self.terminator
            if self._writer is not None:
                self._writer.submit(line, urgent=urgent)
                return
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(line)
                self.flush()
        except RecursionError:  # as logging.StreamHandler.emit
            raise
        except Exception:  # noqa: BLE001 - as logging's own handlers: report, never raise
            self.handleError(record())

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()
        else:
            super().flush()

    def _write_batch(self, text: str) -> None:
        self._guarded(self.stream.write, text)

    def _flush_stream(self) -> None:
        self._guarded(super().flush)

    def _guarded(self, step: Callable[..., object], *args: object) -> None:
        """One write or flush of a batch: whichever thread runs it has no caller expecting a
        logging error, so a failure is reported (or the stream silenced), never raised."""
        try:
            step(*args)
        except RecursionError:
            raise
        except BrokenPipeError:
            # Under the handler's lock while a batch is written: setStream would flush again.
            self.stream = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the handler
        except Exception as exc:  # noqa: BLE001 - as logging's own handlers: report, never raise
            # As logging.Handler.handleError for a batch: what failed, on stderr, once per batch.
            if logging.raiseExceptions and sys.stderr:
                sys.stderr.write(f"--- Logging error --- {exc!r} (lines lost)\n")

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            self.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the handler
            return
        super().handleError(record)


class _LineFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's ``ProcessorFormatter``, rendering bgworkers' own records without a copy.

    For a record made by a structlog logger, ``ProcessorFormatter`` copies the record (a
    second ``LogRecord``) and passes the rendered line through ``logging.Formatter`` once more,
    which for the ``%(message)s`` format changes nothing. Here such a record's event dict goes
    straight through ``own_processors`` (the same steps: exceptions, redaction, rendering),
    once per line of every message; records of other libraries take structlog's path.
    """

    def __init__(self, *, own_processors: list[Processor], **kwargs: Any) -> None:
        remove_meta = structlog.stdlib.ProcessorFormatter.remove_processors_meta
        super().__init__(processors=[remove_meta, *own_processors], **kwargs)
        self._own_processors = own_processors

    def format(self, record: logging.LogRecord) -> str:
        # Overrides structlog's (see bgworkers.compat.structlog, whose test watches it).
        source = structlog_source(record)
        if source is None:
            return super().format(record)
        logger, method, event_dict = source
        return self.render_event(logger, dict(event_dict), method)

    def render_event(self, logger: Any, event_dict: Any, method: str) -> str:
        """One event dict through the own processors (exceptions, redaction, rendering)."""
        for processor in self._own_processors:
            event_dict = processor(logger, method, event_dict)
        return str(event_dict)


def resolve_log_format(log_format: str | None, stream: TextIO) -> str:
    """``json`` or ``console``: an explicit choice wins; ``auto`` (or None) picks the readable
    console format when ``stream`` is a terminal, JSON otherwise (files, pipes, journald)."""
    if log_format in ("json", "console"):
        return log_format
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # a closed or file-less stream: machines read it
        return "json"


def configure_logging(
    *,
    log_format: str | None = "auto",
    level: str = "INFO",
    stream: TextIO | None = None,
    batched: bool = False,
    broker_nodes: Sequence[str] = (),
) -> None:
    """Route every logger of this process to one handler on ``stream`` (bgworkers' processes).

    ``batched``: lines below WARNING are written a batch at a time (worker processes, see
    :mod:`bgworkers.logs.log_writer`). ``broker_nodes``: ``host:port`` of the RabbitMQ nodes,
    named by a lost connection's line.
    """
    stream = stream or sys.__stdout__ or sys.stdout
    console = resolve_log_format(log_format, stream) == "console"
    renderer: Processor = structlog.dev.ConsoleRenderer(colors=False) if console else render_json
    formatter = _LineFormatter(
        foreign_pre_chain=_shared_processors(),
        own_processors=[structlog.processors.format_exc_info, redact_secrets, renderer],
    )
    handler = _PipeTolerantHandler(stream, batched=batched)
    handler.setFormatter(formatter)
    handler.addFilter(LibraryNoiseFilter(broker_nodes=broker_nodes))
    reset_logging()
    root = logging.getLogger()
    for old in list(root.handlers):
        # pytest's caplog/report handlers live on the root logger; kept so tests still see logs.
        if not type(old).__module__.startswith("_pytest"):
            root.removeHandler(old)
    handler._bgworkers = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    _ProcessState.handler = handler
    if batched:
        # logging.shutdown runs at interpreter exit, but a dramatiq worker process is a
        # multiprocessing child, which ends with os._exit after only multiprocessing's own
        # exit finalizers: one of those writes the lines still waiting, last.
        import multiprocessing.util

        multiprocessing.util.Finalize(handler, handler.flush, exitpriority=-100)
    _ProcessState.root_level = root.level
    root.setLevel(level)
    # pika logs every reconnect attempt with a traceback; our own lines say what matters.
    logging.getLogger("pika").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    quiet_http_client_logs()


class _QueryRedactingFilter(logging.Filter):
    """Drop the query string out of an HTTP client's request line.

    httpx logs ``HTTP Request: GET https://…?pageToken=…`` at INFO; page and sync tokens, API
    keys and signed-URL signatures travel in query strings. An operator who turns these
    loggers up for debugging still gets the method, host and path, never the query.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(_without_query(arg) for arg in args)
        elif isinstance(record.msg, str) and "?" in record.msg and not args:
            record.msg = _without_query(record.msg)
        return True


def _without_query(value: object) -> object:
    if isinstance(value, int | float) or value is None:
        return value
    text = str(value)
    if "://" not in text or "?" not in text:
        return value
    head, _, rest = text.partition("?")
    fragment = rest.partition("#")[2]
    return redact_text(f"{head}?{REDACTED}" + (f"#{fragment}" if fragment else ""))


def quiet_http_client_logs() -> None:
    """Keep request URLs (and the credentials some APIs put in them) out of the logs.

    Called wherever bgworkers builds an HTTP client and by :func:`configure_logging`, so it
    holds whatever was imported or configured first: httpx and httpcore are set to WARNING
    unless someone chose a level for them, and their records lose their query strings.
    Idempotent.
    """
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
        if not any(isinstance(f, _QueryRedactingFilter) for f in logger.filters):
            logger.addFilter(_QueryRedactingFilter())


def reset_logging() -> None:
    """Undo :func:`configure_logging`: remove bgworkers' handler and put the root level back,
    so other libraries' records (aiosmtpd's ``mail.log`` in tests) are not written to the real
    stdout any more; render as a library."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_bgworkers", False):
            root.removeHandler(old)
    if _ProcessState.root_level is not None:
        root.setLevel(_ProcessState.root_level)
        _ProcessState.root_level = None
    _ProcessState.handler = None


#: structlog's method name for each level, as ``add_log_level`` turns it into the level field.
_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
_METHODS: dict[int, str] = {level: logging.getLevelName(level).lower() for level in _LEVELS}
#: The steps of bgworkers' processor chain that add to an event (as ``_CHAIN``'s).
_ADDING_STEPS: list[Processor] = _shared_processors()


def log_line(name: str, level: int, event: str, **fields: Any) -> None:
    """``get_logger(name).<level>(event, **fields)``, in a fraction of the time when it can be.

    Why: the logging middleware writes one line per message, and the structlog and logging
    machinery around that one line (bound-logger dispatch, a ``LogRecord``, the caller's
    frame looked up, handler dispatch) cost more than rendering it. When this process renders
    through bgworkers' handler and nothing else could see the record (no other handler and no
    logger filter between ``name`` and the root), the event dict goes through the same steps
    as in the processor chain (context, level, logger name, timestamp) and straight to the
    handler's own rendering (redaction, JSON). Otherwise the line goes the normal way, so an
    application's or a test's handler gets the usual record.
    """
    method = _METHODS[level]
    handler = _ProcessState.handler
    logger, bound_logger = _loggers(name)
    if (
        handler is None
        or not logger.isEnabledFor(level)
        or not _only_our_handler(logger, handler, level)
    ):
        getattr(bound_logger, method)(event, **fields)
        return
    event_dict: Any = fields
    event_dict["event"] = event
    for step in _ADDING_STEPS:
        event_dict = step(logger, method, event_dict)
    handler.write_event(logger, event_dict, urgent=level >= logging.WARNING)


@functools.lru_cache(maxsize=64)
def _loggers(name: str) -> tuple[logging.Logger, structlog.stdlib.BoundLogger]:
    # logging.getLogger takes logging's module lock on every call: eight threads asking for
    # it once per message each queued on that lock.
    return logging.getLogger(name), get_logger(name)


def _only_our_handler(logger: logging.Logger, handler: logging.Handler, level: int) -> bool:
    """Whether ``handler`` (on the root logger) is all a record of ``logger`` would meet, and
    would write it: its level lets it through, and its only filter is the library-noise one,
    which passes bgworkers' own loggers untouched."""
    if level < handler.level or not logger.name.startswith("bgworkers."):
        return False
    if any(type(f) is not LibraryNoiseFilter for f in handler.filters):
        return False
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return False
        if current.parent is None:  # the root
            return current.handlers == [handler] and not logging.root.manager.disable
        if current.handlers or not current.propagate:
            return False
        current = current.parent
    return False


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger with bgworkers' own processor chain (see the module); call it with
    an event name and key/value data."""
    logger: structlog.stdlib.BoundLogger = structlog.wrap_logger(
        logging.getLogger(name),
        processors=_CHAIN,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return logger


def bind_context(**values: Any) -> None:
    """Add ``values`` to every line this thread (or task) logs until :func:`clear_context`."""
    _CONTEXT.set({**_CONTEXT.get(), **values})


def clear_context() -> None:
    _CONTEXT.set(_NO_CONTEXT)
