"""Retry policy: dramatiq's ``Retries``, plus what it cannot express; and what it decided.

dramatiq's ``Retries`` decides (docs/architecture.md, "Retry policy"): ``throws`` (``@task``
lists :class:`PermanentError` and the actor's permanent errors) dead-letters at once; otherwise
exponential backoff (milliseconds) until ``max_retries`` or ``retry_when`` says no, then the
dead letter and ``on_retry_exhausted``. The defaults are the settings' (``BGW_RETRY_*``), not
dramatiq's 20 retries over 7 days. Envelope screening (:mod:`bgworkers.brokers.envelope`)
refuses a message that sets ``throws``, ``retry_when`` or ``on_retry_exhausted`` itself, so
only the actor decides those.

What :class:`RetryPolicy` adds, each through ``Retries``' public hook and arguments:

* a :class:`PermanentError` is dead-lettered even by an actor that does not list it in
  ``throws`` (one declared with plain ``dramatiq.actor``);
* a server's ``Retry-After`` (:attr:`TransientError.retry_after_s`) sets the delay, and a
  requested delay (``Retry-After`` or ``dramatiq.Retry``) is capped at ``max_backoff``;
* a retry that RabbitMQ refuses for a while (a quorum queue electing a leader) is sent again
  for up to :data:`RETRY_SEND_PATIENCE_S`, and one that cannot be sent is dead-lettered rather
  than acked unrun;
* the reason of the decision is set on the message (:data:`REASON_ATTR`) for the logging,
  metrics and dead-letter index middleware, and a failing ``on_retry_exhausted`` send is
  logged, not raised (the message is dead-lettered either way).

Read by the middleware that report each delivery: :func:`outcome_of`, :class:`RunEnd`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import dramatiq
from dramatiq import Broker, Message
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware
from dramatiq.middleware.retries import Retries

from bgworkers.errors import PermanentError, TransientError
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.loggers import get_logger

log = get_logger(__name__)

#: Attribute set on the message proxy so the logging and metrics middleware can report it:
#: ``permanent_error``, ``retries_exhausted``, ``retry_when_declined``, ``transient_error``
#: or ``retry_not_sent``.
REASON_ATTR = "bgw_failure_reason"

#: Seconds a retry is sent again while RabbitMQ refuses it before the message is dead-lettered
#: instead: a quorum queue refuses publishes while its cluster elects a leader or has lost its
#: majority (10-20 s in the cluster test), which dramatiq's six immediate attempts do not ride
#: out. The worker thread waits meanwhile (it could not send anything else either).
RETRY_SEND_PATIENCE_S = 45.0


def send_retry(
    broker: Broker,
    message: Message[Any],
    *,
    delay_ms: int | None,
    patience_s: float = RETRY_SEND_PATIENCE_S,
    sleep: Any = time.sleep,
) -> None:
    """``broker.enqueue``, tried again with growing pauses (0.5 s to 8 s) on a connection
    error until ``patience_s`` seconds have passed; then the error propagates."""
    deadline = time.monotonic() + patience_s
    pause_s = 0.5
    while True:
        try:
            broker.enqueue(message, delay=delay_ms)
            return
        except dramatiq.errors.BrokerConnectionError as exc:
            if time.monotonic() + pause_s > deadline:
                raise
            log.warning("message_retry_send_failed", error=failure_reason(exc)[:300])
            sleep(pause_s)
            pause_s = min(pause_s * 2, 8.0)


def requested_delay_ms(exception: BaseException, *, max_backoff_ms: int) -> int | None:
    """The delay the failure asks for (``Retry-After``, ``dramatiq.Retry``), capped at
    ``max_backoff_ms``; None when it asks for none (then the backoff applies)."""
    requested: float | None = None
    if isinstance(exception, TransientError) and exception.retry_after_s is not None:
        requested = exception.retry_after_s * 1000
    elif isinstance(exception, dramatiq.Retry) and exception.delay is not None:
        requested = exception.delay
    return None if requested is None else int(min(max(requested, 0), max_backoff_ms))


class _RetrySender:
    """The broker as ``Retries`` sees it: its one ``enqueue`` (the retry) gets the requested
    delay, if any, and the patience of :func:`send_retry`; actors are the broker's."""

    def __init__(self, broker: Broker, delay_ms: int | None) -> None:
        self.broker = broker
        self.delay_ms = delay_ms

    def get_actor(self, name: str) -> dramatiq.Actor[..., Any]:
        return self.broker.get_actor(name)

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> None:
        delay_ms = self.delay_ms if self.delay_ms is not None else delay
        send_retry(self.broker, message, delay_ms=delay_ms)
        log.info("message_retry_scheduled", delay_ms=delay_ms, attempt=message.options["retries"])


class RetryPolicy(Retries):
    """dramatiq's ``Retries`` with the additions listed in the module docstring."""

    def __init__(self, *, max_retries: int, min_backoff_ms: int, max_backoff_ms: int) -> None:
        super().__init__(
            max_retries=max_retries, min_backoff=min_backoff_ms, max_backoff=max_backoff_ms
        )
        # Its "Retrying message ... in N ms" would give the backoff where Retry-After won:
        # message_retry_scheduled says it right. Its warnings (retries exceeded) stay.
        self.logger = logging.getLogger("bgworkers.middleware.retry_policy.dramatiq")
        self.logger.setLevel(logging.WARNING)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            return
        if isinstance(exception, PermanentError):
            setattr(message, REASON_ATTR, "permanent_error")
            message.fail()  # nacked: RabbitMQ moves it to <queue>.XQ
            return
        actor = broker.get_actor(message.actor_name)
        retries_so_far = message.options.get("retries", 0)
        max_backoff = message.options.get("max_backoff", actor.options.get("max_backoff"))
        sender = _RetrySender(
            broker, requested_delay_ms(exception, max_backoff_ms=max_backoff or self.max_backoff)
        )
        not_sent: str | None = None
        try:
            super().after_process_message(sender, message, result=result, exception=exception)  # type: ignore[no-untyped-call]
        except Exception as exc:  # noqa: BLE001 - whatever stops the retry, the message must not be acked
            not_sent = self._sending_failed(message, exc)
        if message.failed:
            message.options["retries"] = retries_so_far  # Retries counts the attempt it ends
        setattr(message, REASON_ATTR, not_sent or self._reason(message, actor, exception))

    def _sending_failed(self, message: MessageProxy, exc: Exception) -> str | None:
        """Logs why ``Retries`` raised; returns ``retry_not_sent`` if it was the retry."""
        error = failure_reason(exc)[:500]
        if message.failed:  # dead-lettered already: on_retry_exhausted could not be told
            log.error("retry_exhausted_callback_failed", error=error)
            return None
        # Not re-sent (broker down, message grown over the size cap): dead-letter it rather
        # than let the worker ack a message nobody will run.
        message.fail()
        log.error("message_retry_not_sent", error=error)
        return "retry_not_sent"

    @staticmethod
    def _reason(
        message: MessageProxy, actor: dramatiq.Actor[..., Any], exception: BaseException
    ) -> str:
        if not message.failed:
            return "transient_error"
        throws = actor.options.get("throws")
        if throws and isinstance(exception, throws):
            return "permanent_error"
        return "retry_when_declined" if actor.options.get("retry_when") else "retries_exhausted"


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
    the way, else ``skipped``). For a middleware that reports each delivery once (the
    canonical log line, the consumer span), however it ended."""

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
