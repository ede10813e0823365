"""Message context on every log line, and one canonical line per processed message.

Why: when a worker runs eight messages at once, a log line is only useful if it says which
message it belongs to. The context (message id, actor, queue, retry count) is bound for the
duration of the run, so lines from domain code and from dramatiq itself carry it. At the end
one ``message_processed`` line sums the run up: outcome, duration, error.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from dramatiq import Broker
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name

from bgworkers.logs.failure_reasons import error_text
from bgworkers.logs.loggers import bind_context, clear_context, log_line
from bgworkers.middleware.retry_policy import REASON_ATTR, RunEnd

LOGGER = "bgworkers.messages"
_LEVELS = {"succeeded": logging.INFO, "retried": logging.WARNING}
#: Set on the message proxy (one per delivery), never in a dict keyed by message id: a retry
#: keeps the id and may start on another thread before this attempt's after-hooks have run.
STARTED_ATTR = "bgw_logging_started"


class MessageLogging(RunEnd):
    """Binds the message context for a run and writes its one ``message_processed`` line."""

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        clear_context()
        bind_context(
            message_id=message.message_id,
            actor=message.actor_name,
            queue=q_name(message.queue_name),
            retries=message.options.get("retries", 0),
        )
        traceparent = message.options.get("traceparent")
        if isinstance(traceparent, str):  # tracing on: find the run's trace from its log lines
            bind_context(trace_id=traceparent[3:35])
        setattr(message, STARTED_ATTR, time.perf_counter())

    def run_ended(
        self,
        message: MessageProxy,
        outcome: str,
        exception: BaseException | None,
        *,
        skipped: bool,
    ) -> None:
        fields: dict[str, Any] = {"outcome": outcome}
        started: float | None = message.__dict__.pop(STARTED_ATTR, None)
        if started is not None:
            fields["duration_s"] = round(time.perf_counter() - started, 6)
        if skipped:
            fields["reason"] = "skipped"
        if exception is not None:
            fields["error_type"] = type(exception).__name__
            fields["error"] = error_text(exception)
            fields["reason"] = getattr(message, REASON_ATTR, None)
        level = logging.WARNING if skipped else _LEVELS.get(outcome, logging.ERROR)
        log_line(LOGGER, level, "message_processed", **fields)
        clear_context()
