"""What became of a processed message, as the retry policy decided it.

Shared by the logging and metrics middleware and the schedule guard, which all report the
same three outcomes; it lives apart from any one of them so none imports another for it.
:class:`RunEnd` is the end of a delivery for a middleware that reports each one once
(the canonical log line, the consumer span), however it ended.
"""

from __future__ import annotations

from typing import Any, Literal

from dramatiq import Broker
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

Outcome = Literal["succeeded", "retried", "dead_lettered"]


def outcome_of(message: MessageProxy, exception: BaseException | None) -> Outcome:
    """``succeeded``, ``retried`` or ``dead_lettered``.

    Read in ``after_process_message`` hooks that run after the retry policy's (hooks run in
    reverse order there), so ``message.failed`` already holds its decision.
    """
    if exception is None and not message.failed:
        return "succeeded"
    return "dead_lettered" if message.failed else "retried"


class RunEnd(Middleware):
    """Calls :meth:`run_ended` once per delivery: after it ran (its outcome as the retry
    policy decided) or when a middleware skipped it (``dead_lettered`` if it was failed on
    the way, else ``skipped``)."""

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self.run_ended(message, outcome_of(message, exception), exception, skipped=False)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        outcome = "dead_lettered" if message.failed else "skipped"
        self.run_ended(message, outcome, None, skipped=True)

    def run_ended(
        self,
        message: MessageProxy,
        outcome: str,
        exception: BaseException | None,
        *,
        skipped: bool,
    ) -> None:
        raise NotImplementedError
