"""What became of a processed message, as the retry policy decided it.

Shared by the logging and metrics middleware and the schedule guard, which all report the
same three outcomes; it lives apart from any one of them so none imports another for it.
"""

from __future__ import annotations

from typing import Literal

from dramatiq.broker import MessageProxy

Outcome = Literal["succeeded", "retried", "dead_lettered"]


def outcome_of(message: MessageProxy, exception: BaseException | None) -> Outcome:
    """``succeeded``, ``retried`` or ``dead_lettered``.

    Read in ``after_process_message`` hooks that run after the retry policy's (hooks run in
    reverse order there), so ``message.failed`` already holds its decision.
    """
    if exception is None and not message.failed:
        return "succeeded"
    return "dead_lettered" if message.failed else "retried"
