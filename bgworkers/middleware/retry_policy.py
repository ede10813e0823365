"""Retry policy: permanent errors are dead-lettered at once, transient ones retried with backoff.

Why not dramatiq's ``Retries``: its defaults retry 20 times over up to 7 days (beyond
RabbitMQ's 30-minute consumer timeout, which then closes the worker's channel), it ignores a
server's ``Retry-After``, and it cannot tell a validation error from a network blip unless
every actor lists ``throws``. This middleware replaces it and keeps its actor options
(``max_retries``, ``min_backoff``, ``max_backoff``, ``throws``, ``retry_when`` and
``on_retry_exhausted``), so actors written for dramatiq keep working. Backoffs are in
milliseconds. As in dramatiq, ``on_retry_exhausted`` names an actor that is sent
``(message_data, {"retries": n, "max_retries": m})`` when a message is dead-lettered because
its retries ran out (or ``retry_when`` declined), not for a permanent error; unlike dramatiq,
only the actor may set it, never the message (see :mod:`bgworkers.brokers.envelope`).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any, cast

import dramatiq
from dramatiq import Broker, Message
from dramatiq.broker import MessageProxy
from dramatiq.common import compute_backoff
from dramatiq.middleware import Middleware

from bgworkers.errors import PermanentError, TransientError
from bgworkers.logs.loggers import get_logger

log = get_logger(__name__)

#: Exceptions that are never worth a retry, whatever the actor says.
ALWAYS_PERMANENT: tuple[type[BaseException], ...] = (PermanentError,)

#: Decisions after which the actor's ``on_retry_exhausted`` callback is told.
EXHAUSTED_REASONS = frozenset({"retries_exhausted", "retry_when_declined"})

#: Attribute set on the message proxy so the logging and metrics middleware can report it.
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
            log.warning("message_retry_send_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            sleep(pause_s)
            pause_s = min(pause_s * 2, 8.0)


@dataclass(frozen=True)
class RetryDecision:
    """What :func:`decide_retry` chose, and why (the reason is logged and counted)."""

    retry: bool
    reason: str  # "permanent_error", "retries_exhausted" or "transient_error"
    delay_ms: int = 0


def decide_retry(
    exception: BaseException,
    *,
    retries_so_far: int,
    max_retries: int,
    min_backoff_ms: int,
    max_backoff_ms: int,
    permanent: tuple[type[BaseException], ...] = (),
) -> RetryDecision:
    """What to do with a message whose run raised ``exception``; pure, so it is unit-tested."""
    if isinstance(exception, ALWAYS_PERMANENT + permanent):
        return RetryDecision(retry=False, reason="permanent_error")
    if retries_so_far >= max_retries:
        return RetryDecision(retry=False, reason="retries_exhausted")
    _, delay = compute_backoff(retries_so_far, factor=min_backoff_ms, max_backoff=max_backoff_ms)
    requested_ms: float | None = None
    if isinstance(exception, TransientError) and exception.retry_after_s is not None:
        requested_ms = exception.retry_after_s * 1000
    elif isinstance(exception, dramatiq.Retry) and exception.delay is not None:
        requested_ms = exception.delay
    if requested_ms is not None:
        delay = int(min(max(requested_ms, 0), max_backoff_ms))
    return RetryDecision(retry=True, reason="transient_error", delay_ms=int(delay))


class RetryPolicy(Middleware):
    """Applies :func:`decide_retry` to every failed message."""

    def __init__(self, *, max_retries: int, min_backoff_ms: int, max_backoff_ms: int) -> None:
        self.max_retries = max_retries
        self.min_backoff_ms = min_backoff_ms
        self.max_backoff_ms = max_backoff_ms

    @property
    def actor_options(self) -> set[str]:
        return {
            "max_retries",
            "min_backoff",
            "max_backoff",
            "throws",
            "retry_when",
            "on_retry_exhausted",
        }

    def _notify_exhausted(
        self,
        broker: Broker,
        message: MessageProxy,
        actor: dramatiq.Actor[..., Any],
        retries_so_far: int,
    ) -> None:
        target = actor.options.get("on_retry_exhausted")
        if not target:
            return
        max_retries = self._option(message, actor, "max_retries", self.max_retries)
        try:
            broker.get_actor(target).send(
                message.asdict(), {"retries": retries_so_far, "max_retries": max_retries}
            )
        except Exception as exc:  # noqa: BLE001 - the message is dead-lettered either way
            log.error("retry_exhausted_callback_failed", target=target, error=repr(exc)[:500])

    def _option(
        self, message: MessageProxy, actor: dramatiq.Actor[..., Any], name: str, default: Any
    ) -> Any:
        return message.options.get(name, actor.options.get(name, default))

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
        actor = broker.get_actor(message.actor_name)
        retries_so_far = message.options.get("retries", 0)
        throws = self._option(message, actor, "throws", ())
        permanent = tuple(throws) if isinstance(throws, list | tuple) else (throws,)
        retry_when = actor.options.get("retry_when")
        decision = decide_retry(
            exception,
            retries_so_far=retries_so_far,
            # As in dramatiq: retry_when, when set, replaces the max_retries limit.
            max_retries=(
                retries_so_far + 1
                if retry_when is not None
                else self._option(message, actor, "max_retries", self.max_retries)
            ),
            min_backoff_ms=self._option(message, actor, "min_backoff", self.min_backoff_ms),
            max_backoff_ms=self._option(message, actor, "max_backoff", self.max_backoff_ms),
            permanent=permanent,
        )
        if decision.retry and retry_when is not None and not retry_when(retries_so_far, exception):
            decision = RetryDecision(retry=False, reason="retry_when_declined")
        setattr(message, REASON_ATTR, decision.reason)
        if not decision.retry:
            message.fail()  # nacked: RabbitMQ moves it to <queue>.XQ
            if decision.reason in EXHAUSTED_REASONS:
                self._notify_exhausted(broker, message, actor, retries_so_far)
            return
        message.options["retries"] = retries_so_far + 1
        message.options["traceback"] = traceback.format_exc(limit=30)
        message.options["requeue_timestamp"] = int(time.time() * 1000)
        try:
            # The proxy stands for its message (as dramatiq's own Retries re-enqueues it).
            send_retry(broker, cast("Message[Any]", message), delay_ms=decision.delay_ms)
        except Exception as exc:  # noqa: BLE001 - whatever stops the retry, the message must not be acked
            # Not re-sent (broker down, message grown over the size cap): dead-letter it rather
            # than let the worker ack a message nobody will run.
            setattr(message, REASON_ATTR, "retry_not_sent")
            message.fail()
            log.error("message_retry_not_sent", error=f"{type(exc).__name__}: {exc}"[:500])
            return
        log.info("message_retry_scheduled", delay_ms=decision.delay_ms, attempt=retries_so_far + 1)
