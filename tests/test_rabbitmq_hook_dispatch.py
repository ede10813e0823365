"""Hooks reach exactly the middleware dramatiq's own dispatch would call, in its order."""

from __future__ import annotations

from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, SkipMessage

from bgworkers.brokers.rabbitmq import SelectiveHooks, implements


class Recording(Middleware):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    def before_process_message(self, broker: Any, message: Any) -> None:
        self.calls.append(f"before {self.name}")

    def after_process_message(self, broker: Any, message: Any, **kwargs: Any) -> None:
        self.calls.append(f"after {self.name}")


class Silent(Middleware):
    """Implements no hook: skipped."""


class Failing(Middleware):
    def before_process_message(self, broker: Any, message: Any) -> None:
        raise RuntimeError("boom")

    def after_process_message(self, broker: Any, message: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")


class Skipping(Middleware):
    def before_process_message(self, broker: Any, message: Any) -> None:
        raise SkipMessage()


class Selective(SelectiveHooks, StubBroker):
    pass


def both(middleware: list[Middleware]) -> tuple[StubBroker, Selective]:
    return StubBroker(middleware=list(middleware)), Selective(middleware=list(middleware))


def test_order_and_calls_match_dramatiqs_dispatch() -> None:
    calls: list[str] = []
    stack = [Recording("a", calls), Silent(), Failing(), Recording("b", calls)]
    for broker in both(stack):
        calls.clear()
        broker.emit_before("process_message", object())
        broker.emit_after("process_message", object(), result=None)
        assert calls == ["before a", "before b", "after b", "after a"]


def test_a_middleware_error_propagates_from_before_hooks() -> None:
    for broker in both([Skipping()]):
        with pytest.raises(SkipMessage):
            broker.emit_before("process_message", object())


def test_a_changed_middleware_list_is_seen_at_the_next_signal() -> None:
    calls: list[str] = []
    broker = Selective(middleware=[Recording("a", calls)])
    broker.emit_before("process_message", object())
    broker.middleware.insert(0, Recording("first", calls))  # as a test edits the stack
    broker.add_middleware(Recording("last", calls))
    broker.emit_before("process_message", object())
    assert calls == ["before a", "before first", "before a", "before last"]


def test_implements_sees_class_and_instance_hooks_only() -> None:
    assert not implements(Silent(), "before_process_message")
    assert implements(Failing(), "before_process_message")
    silent = Silent()
    silent.before_ack = lambda broker, message: None  # type: ignore[method-assign]
    assert implements(silent, "before_ack")
    assert implements(Silent(), "before_no_such_signal")  # fails as in dramatiq when called
