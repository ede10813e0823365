"""Coalesced acks against the real RabbitMQ: every ack is on the wire while the worker runs."""

from __future__ import annotations

import socket
import threading

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bgworkers import queues
from bgworkers.tasks import task
from tests.platform_helpers import wait_for

pytestmark = pytest.mark.integration
QUEUE = queues.MAINTENANCE
MESSAGES = 400


def test_acks_reach_rabbitmq_before_the_connection_is_cut(test_broker: RabbitmqBroker) -> None:
    """Eight threads ack 400 messages; then the consumer's TCP connection is cut without a
    goodbye. An ack still waiting in the client would make RabbitMQ deliver its message
    again (a second run) or leave it ready in the queue."""
    runs: list[int] = []
    lock = threading.Lock()

    def count_run(item: int) -> None:
        with lock:
            runs.append(item)

    actor = task(queue=QUEUE, broker=test_broker)(count_run)
    worker = dramatiq.Worker(test_broker, worker_timeout=100, worker_threads=8)
    worker.start()
    try:
        for item in range(MESSAGES):
            actor.send(item)
        # With a prefetch of 16, the 400 messages only all arrive if acks flow meanwhile.
        wait_for(lambda: len(runs) == MESSAGES, what="every message run")
        worker.join()  # every run's after-hooks done, its ack handed to the consumer
        consumer = worker.consumers[QUEUE].consumer
        assert consumer is not None
        transport = consumer.connection._impl._transport  # type: ignore[attr-defined]

        def acks_written() -> bool:
            """Idle: no ack waits in the consumer or in pika's write buffer (a late frame
            that flushed them would hide an ack left behind)."""
            pending = consumer._bgw_pending_acks or consumer._bgw_ack_scheduled  # type: ignore[attr-defined]
            return not pending and not transport._tx_buffers

        wait_for(acks_written, what="every ack written to the socket")
        transport._sock.shutdown(socket.SHUT_RDWR)  # as if the process had been killed
        # RabbitMQ requeues what was unacked; the consumer reconnects and would run it again.
        wait_for(
            lambda: worker.consumers[QUEUE].consumer is not consumer,
            timeout_s=30,
            what="the consumer to reconnect",
        )
        test_broker.join(QUEUE, timeout=30_000)
        worker.join()
        ready, delayed, dead = test_broker.get_queue_message_counts(QUEUE)
    finally:
        worker.stop()
    assert sorted(runs) == list(range(MESSAGES))  # no second run
    assert (ready, delayed, dead) == (0, 0, 0)
