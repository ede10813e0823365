"""Fixtures of the integration tests against the real RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bgworkers import queues
from bgworkers.settings import get_settings
from bgworkers.stack.broker import build_broker

#: The queue test-only actors are declared on.
TEST_QUEUE = queues.MAINTENANCE


@pytest.fixture
def test_broker(rabbitmq_url: str) -> Iterator[RabbitmqBroker]:
    """A broker of its own (bgworkers' stack) for test-only actors, queues purged."""
    broker = build_broker(get_settings())
    broker.emit_after("process_boot")
    broker.declare_queue(TEST_QUEUE)
    broker.flush(TEST_QUEUE)
    yield broker
    broker.flush(TEST_QUEUE)
    broker.close()
