"""A message RabbitMQ hands out again (its consumer died unacked) is counted per queue."""

from __future__ import annotations

import dramatiq
import pika
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from prometheus_client import CollectorRegistry

from bgworkers import queues
from bgworkers.tasks import task
from tests.platform_helpers import wait_for

pytestmark = pytest.mark.integration
QUEUE = queues.MAINTENANCE


def take_without_ack(url: str) -> None:
    """Take one message as a consumer that then dies: RabbitMQ requeues it, redelivered."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    taken: list[object] = []

    def take() -> bool:
        method, _properties, _body = channel.basic_get(QUEUE, auto_ack=False)
        taken.append(method)
        return method is not None

    wait_for(take, what="the message in the queue")
    connection.close()  # unacked: requeued with the redelivered flag


def test_a_redelivered_message_runs_once_and_is_counted(
    test_broker: RabbitmqBroker, rabbitmq_url: str, registry: CollectorRegistry
) -> None:
    runs: list[int] = []

    def record_item(item: int) -> None:
        runs.append(item)

    actor = task(queue=QUEUE, broker=test_broker)(record_item)
    actor.send(7)
    take_without_ack(rabbitmq_url)
    worker = dramatiq.Worker(test_broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        wait_for(lambda: runs == [7], what="the redelivered message to run")
    finally:
        worker.stop()
    value = registry.get_sample_value("bgworkers_messages_redelivered_total", {"queue": QUEUE})
    assert value == 1
