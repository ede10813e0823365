"""RabbitMQ down: the application keeps enqueueing, nothing is lost, the relay resumes alone.

Runs against a RabbitMQ node of the test's own (stopped and started here), never the shared
one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import dramatiq
import pika
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers import queues
from bgworkers.db.engine import session_scope
from bgworkers.outbox import enqueue
from bgworkers.outbox.models import OutboxMessage
from bgworkers.outbox.publishers import RabbitmqConfirmPublisher
from bgworkers.outbox.relay import Relay, RelayConfig
from tests.outbox.probe import outbox_probe
from tests.outbox.rabbitmq_node import RabbitmqNode, private_node
from tests.platform_helpers import wait_for

pytestmark = pytest.mark.integration
NODE_PORT = 5701  # this test's own node, in the outbox tests' port block (5700-5709)


@pytest.fixture
def node() -> Iterator[RabbitmqNode]:
    with private_node("bgwoutbox-node-", name="bgwoutbox1@localhost", port=NODE_PORT) as own:
        yield own


def counts(engine: Engine) -> tuple[int, int]:
    """(unpublished rows, rows with at least one failed attempt)."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    with Session(engine) as session:
        waiting = session.execute(
            select(func.count()).where(table.c.published_at.is_(None))
        ).scalar_one()
        failed = session.execute(
            select(func.count()).where(table.c.last_error.is_not(None))
        ).scalar_one()
    return int(waiting), int(failed)


def drain(url: str, queue: str) -> list[str]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    ids: list[str] = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        ids.append(dramatiq.Message.decode(body).message_id)
    connection.close()
    return ids


def test_enqueue_keeps_working_while_rabbitmq_is_down_and_all_arrive_once(
    sqlite_engine: Engine, node: RabbitmqNode
) -> None:
    declarer = RabbitmqBroker(url=node.url, middleware=[])
    relay = Relay(
        engine=lambda: sqlite_engine,
        publisher=RabbitmqConfirmPublisher(
            node.url,
            declare=lambda q: declarer.declare_queue(q, ensure=True),
            timeout_s=5,
            connect_timeout_s=2,
        ),
        config=RelayConfig(batch_size=50, poll_interval_s=0.1, use_lease=False),
    )
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    expected: list[str] = []
    try:
        with session_scope(sqlite_engine) as session:
            expected.append(enqueue(session, outbox_probe, "before").message_id)
        wait_for(lambda: counts(sqlite_engine)[0] == 0, timeout_s=30, what="the first publish")

        node.stop_app()
        slowest = 0.0
        for n in range(20):
            started = time.monotonic()
            with session_scope(sqlite_engine) as session:  # a business transaction
                for i in range(10):
                    expected.append(enqueue(session, outbox_probe, f"down-{n}-{i}").message_id)
            slowest = max(slowest, time.monotonic() - started)
        # The call never waits for RabbitMQ (a publish would block or fail here).
        assert slowest < 5, slowest
        wait_for(lambda: counts(sqlite_engine)[1] > 0, timeout_s=30, what="a failed relay attempt")
        assert counts(sqlite_engine)[0] == 200  # the rows accumulate, none is dropped

        node.start_app()
        wait_for(lambda: counts(sqlite_engine)[0] == 0, timeout_s=60, what="the relay to resume")
    finally:
        stop.set()
        thread.join(timeout=30)
        declarer.close()
    delivered = drain(node.url, queues.MAINTENANCE)
    assert delivered == expected  # each exactly once, in the order they were written
