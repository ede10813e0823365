"""Coalesced acks without a broker: one wake-up per batch, every tag acked once, in order."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pika.exceptions
import pytest
from dramatiq.errors import ConnectionClosed

from bgworkers.brokers.rabbitmq import CoalescedAcks


@dataclass
class FakeImplChannel:
    acked: list[int] = field(default_factory=list)

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        assert not multiple
        self.acked.append(delivery_tag)


@dataclass
class FakeChannel:
    _impl: FakeImplChannel = field(default_factory=FakeImplChannel)


@dataclass
class FakeConnection:
    callbacks: list[Callable[[], None]] = field(default_factory=list)
    closed: bool = False

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        if self.closed:
            raise pika.exceptions.ConnectionWrongStateError("closed")
        self.callbacks.append(callback)

    def run_callbacks(self) -> None:
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()


class Consumer(CoalescedAcks):
    def __init__(self) -> None:
        super().__init__()
        self.connection = FakeConnection()
        self.channel = FakeChannel()
        self.known_tags: set[int] = set()
        self.logger = logging.getLogger("test.coalesced_acks")


@dataclass
class Delivered:
    _tag: int


def delivered(consumer: Consumer, *tags: int) -> list[Delivered]:
    consumer.known_tags.update(tags)
    return [Delivered(tag) for tag in tags]


def test_acks_waiting_together_take_one_wake_up_and_keep_their_order() -> None:
    consumer = Consumer()
    for message in delivered(consumer, 3, 1, 2):
        consumer.ack(message)
    assert len(consumer.connection.callbacks) == 1
    consumer.connection.run_callbacks()
    assert consumer.channel._impl.acked == [3, 1, 2]
    [message] = delivered(consumer, 4)
    consumer.ack(message)  # the next batch gets its own wake-up
    assert len(consumer.connection.callbacks) == 1
    consumer.connection.run_callbacks()
    assert consumer.channel._impl.acked == [3, 1, 2, 4]
    assert consumer.known_tags == set()


def test_a_tag_not_delivered_on_this_connection_is_not_acked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = Consumer()
    consumer.ack(Delivered(9))  # e.g. delivered before a reconnect
    assert consumer.connection.callbacks == []
    assert "not in known tags" in caplog.text


def test_a_closed_connection_is_reported_as_dramatiq_expects() -> None:
    consumer = Consumer()
    consumer.connection.closed = True
    [message] = delivered(consumer, 1)
    with pytest.raises(ConnectionClosed):
        consumer.ack(message)


def test_acks_from_eight_threads_are_each_sent_once() -> None:
    consumer = Consumer()
    messages = delivered(consumer, *range(1, 8_001))
    stop = threading.Event()

    def connection_thread() -> None:
        while not stop.is_set() or consumer.connection.callbacks:
            consumer.connection.run_callbacks()

    def worker(part: list[Delivered]) -> None:
        for message in part:
            consumer.ack(message)

    loop = threading.Thread(target=connection_thread)
    loop.start()
    workers = [threading.Thread(target=worker, args=(messages[i::8],)) for i in range(8)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    stop.set()
    loop.join()
    consumer.connection.run_callbacks()
    acked: Any = consumer.channel._impl.acked
    assert sorted(acked) == list(range(1, 8_001))
