"""A retry RabbitMQ refuses for a while (a cluster electing a leader) is sent again, not lost."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest
from dramatiq.errors import ConnectionClosed

from bgworkers.middleware.retry_policy import send_retry


class FlakyBroker:
    """Refuses the first ``refusals`` sends with a connection error, then takes them."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.sent: list[tuple[Any, int | None]] = []

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        if self.refusals:
            self.refusals -= 1
            raise ConnectionClosed(RuntimeError("0 message(s) NACKed"))
        self.sent.append((message, delay))
        return message


MESSAGE = dramatiq.Message(queue_name="q", actor_name="a", args=(), kwargs={}, options={})


def test_a_refused_retry_is_sent_again_with_growing_pauses() -> None:
    broker = FlakyBroker(refusals=5)
    pauses: list[float] = []
    send_retry(broker, MESSAGE, delay_ms=1_000, sleep=pauses.append)  # type: ignore[arg-type]
    assert broker.sent == [(MESSAGE, 1_000)]
    assert pauses == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_past_its_patience_the_error_propagates() -> None:
    broker = FlakyBroker(refusals=1_000)
    pauses: list[float] = []
    with pytest.raises(ConnectionClosed):
        send_retry(broker, MESSAGE, delay_ms=None, patience_s=0.0, sleep=pauses.append)  # type: ignore[arg-type]
    assert pauses == [] and broker.sent == []


def test_other_errors_are_not_retried() -> None:
    class Refusing:
        def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
            raise ValueError("too large")

    with pytest.raises(ValueError):
        send_retry(Refusing(), MESSAGE, delay_ms=None, sleep=lambda _: None)  # type: ignore[arg-type]
