"""The relay against the real RabbitMQ: delivery after commit, once, in order; two relays."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

import dramatiq
import pika
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers import queues
from bgworkers.db.engine import session_scope
from bgworkers.outbox import enqueue, enqueue_many
from bgworkers.outbox.models import OutboxMessage
from bgworkers.outbox.publishers import Outgoing, RabbitmqConfirmPublisher
from bgworkers.outbox.relay import Relay, RelayConfig
from tests.outbox import probe
from tests.outbox.probe import outbox_probe
from tests.platform_helpers import wait_for

pytestmark = pytest.mark.integration


def unpublished(engine: Engine) -> int:
    with Session(engine) as session:
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        return int(
            session.execute(select(func.count()).where(table.c.published_at.is_(None))).scalar_one()
        )


def test_commit_delivers_once_rollback_and_duplicates_deliver_nothing(
    db_engine: Engine, app_broker: dramatiq.Broker, app_worker: dramatiq.Worker
) -> None:
    with pytest.raises(RuntimeError), session_scope(db_engine) as session:
        enqueue(session, outbox_probe, "rolled-back")
        raise RuntimeError("the business change failed")
    with session_scope(db_engine) as session:
        enqueue(session, outbox_probe, "committed")
        enqueue(session, outbox_probe, "dedupe", dedupe_key="once")
    with session_scope(db_engine) as session:
        assert enqueue(session, outbox_probe, "dedupe", dedupe_key="once").duplicate
        enqueue(session, outbox_probe, "last")  # published after the others: id order

    wait_for(lambda: probe.EFFECTS["last"] == 1, timeout_s=30, what="the last message")
    app_broker.join(queues.MAINTENANCE, timeout=10_000)
    app_worker.join()
    assert Counter({"committed": 1, "dedupe": 1, "last": 1}) == probe.DELIVERIES
    # Four worker threads may finish in any order; the relay publishes in id order.
    assert sorted(probe.ORDER) == ["committed", "dedupe", "last"]
    with Session(db_engine) as session:
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        stamps = session.execute(select(table.c.published_at).order_by(table.c.id)).scalars()
        published = list(stamps)
    assert None not in published and published == sorted(published)


def test_a_delayed_message_goes_through_the_delay_queue(
    sqlite_engine: Engine, app_broker: dramatiq.Broker, app_worker: dramatiq.Worker
) -> None:
    with session_scope(sqlite_engine) as session:
        enqueue(session, outbox_probe, "delayed", delay_ms=3_000)
        enqueue(session, outbox_probe, "now")
    wait_for(lambda: probe.EFFECTS["now"] == 1, timeout_s=30, what="the undelayed message")
    # Both rows are published at once: the broker (the .DQ queue), not the outbox, holds it.
    # (The relay marks them once RabbitMQ confirmed them: the consumer may run first.)
    wait_for(lambda: unpublished(sqlite_engine) == 0, timeout_s=10, what="both rows marked")
    wait_for(lambda: probe.EFFECTS["delayed"] == 1, timeout_s=30, what="the delayed message")
    assert probe.ORDER == ["now", "delayed"]


class CountingPublisher:
    """A real confirming publisher that also remembers which message ids it published."""

    def __init__(self, inner: RabbitmqConfirmPublisher) -> None:
        self.inner = inner
        self.published: list[str] = []

    def publish(self, batch: Sequence[Outgoing]) -> None:
        self.inner.publish(batch)
        self.published += [item.message_id for item in batch]

    def close(self) -> None:
        self.inner.close()


def drain(url: str, queue: str, expected: int) -> list[str]:
    """Message ids of every message in ``queue`` (consumed and acknowledged)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1_000)
    ids: list[str] = []
    for method, _, body in channel.consume(queue, inactivity_timeout=3):
        if method is None:
            break
        ids.append(dramatiq.Message.decode(body).message_id)
        if len(ids) % 500 == 0 or len(ids) >= expected:
            channel.basic_ack(method.delivery_tag, multiple=True)
    channel.cancel()
    connection.close()
    return ids


def test_two_relays_on_postgresql_never_publish_a_row_twice(
    postgres_engine: Engine, app_broker: dramatiq.Broker, no_worker_relay: None, rabbitmq_url: str
) -> None:
    total = 10_000
    with Session(postgres_engine) as session:
        enqueue_many(session, outbox_probe, ((f"k{i}",) for i in range(total)))
        session.commit()
    publishers = [
        CountingPublisher(
            RabbitmqConfirmPublisher(
                rabbitmq_url, declare=lambda q: app_broker.declare_queue(q, ensure=True)
            )
        )
        for _ in range(2)
    ]
    # No lease: both relays work at once, and only row locking keeps them apart.
    relays = [
        Relay(
            engine=lambda: postgres_engine,
            publisher=publisher,
            config=RelayConfig(batch_size=100, use_lease=False),
        )
        for publisher in publishers
    ]
    errors: list[BaseException] = []

    def run(relay: Relay) -> None:
        try:
            while relay.publish_batch():
                pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(relay,)) for relay in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for publisher in publishers:
        publisher.close()

    assert errors == []
    assert unpublished(postgres_engine) == 0
    counts = [len(p.published) for p in publishers]
    assert sum(counts) == total and min(counts) > 0, counts  # both relays took part
    assert set(publishers[0].published).isdisjoint(publishers[1].published)
    delivered = drain(rabbitmq_url, queues.MAINTENANCE, total)
    assert len(delivered) == total and len(set(delivered)) == total
    with Session(postgres_engine) as session:
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        attempts = session.execute(
            select(table.c.attempts, func.count()).group_by(table.c.attempts)
        )
        assert dict(attempts.all()) == {1: total}  # each row published in exactly one batch
