"""The relay's own logic on both databases, with a small in-memory publisher: lease, failure
bookkeeping, pruning, delayed envelopes and the backlog metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.outbox import enqueue
from bgworkers.outbox.metrics import Backlog, OutboxBacklogCollector
from bgworkers.outbox.models import OutboxMessage
from bgworkers.outbox.publishers import Outgoing, PublishError, delayed_envelope
from bgworkers.outbox.relay import Relay, RelayConfig
from tests.outbox.helpers import Clock, MemoryPublisher, add
from tests.outbox.probe import outbox_probe


def stored(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)))  # type: ignore[arg-type]


def relay(engine: Engine, publisher: MemoryPublisher, clock: Clock, **config: object) -> Relay:
    return Relay(
        engine=lambda: engine,
        publisher=publisher,
        config=RelayConfig(**config),  # type: ignore[arg-type]
        clock=clock,
        wakeup=threading.Event(),
    )


def test_batches_in_id_order_and_failures_are_recorded_and_retried(
    db_engine: Engine, registry: CollectorRegistry
) -> None:
    add(db_engine, 5)
    publisher, clock = MemoryPublisher(), Clock()
    one = relay(db_engine, publisher, clock, batch_size=2, use_lease=False)
    publisher.down = True
    with pytest.raises(PublishError):
        one.publish_batch()
    rows = stored(db_engine)
    assert [(r.attempts, r.last_error, r.published_at) for r in rows[:2]] == [
        (1, "broker down", None)
    ] * 2
    assert rows[2].attempts == 0  # not in the failed batch
    assert registry.get_sample_value("bgworkers_outbox_publish_failures_total") == 1
    publisher.down = False
    assert [one.publish_batch() for _ in range(4)] == [2, 2, 1, 0]
    keys = [json.loads(item.body)["args"][0] for b in publisher.batches for item in b]
    assert keys == [f"k{i}" for i in range(5)]
    assert all(row.published_at == clock.now for row in stored(db_engine))
    published = registry.get_sample_value(
        "bgworkers_outbox_published_total", {"queue": "maintenance"}
    )
    assert published == 5


def test_only_the_lease_holder_publishes_until_its_lease_expires(db_engine: Engine) -> None:
    add(db_engine, 3)
    clock = Clock()
    first = relay(db_engine, MemoryPublisher(), clock, holder="a", lease_s=15)
    second = relay(db_engine, MemoryPublisher(), clock, holder="b", lease_s=15)
    assert first.hold_lease() and not second.hold_lease()
    clock.now += timedelta(seconds=10)
    assert first.hold_lease()  # renewed: now valid until +25 s
    clock.now += timedelta(seconds=10)
    assert not second.hold_lease()
    clock.now += timedelta(seconds=6)  # the holder stopped renewing at +10 s: taken over
    assert second.hold_lease() and not first.hold_lease()
    second.release_lease()
    assert first.hold_lease()


def test_published_rows_are_pruned_after_the_retention(
    db_engine: Engine, registry: CollectorRegistry
) -> None:
    add(db_engine, 3)
    publisher, clock = MemoryPublisher(), Clock()
    one = relay(db_engine, publisher, clock, use_lease=False, retention=timedelta(hours=1))
    one.publish_batch()
    add(db_engine, 1)  # unpublished rows are never pruned
    clock.now += timedelta(minutes=59)
    assert one.prune() == 0
    clock.now += timedelta(minutes=2)
    assert one.prune() == 3
    [left] = stored(db_engine)
    assert left.published_at is None
    assert registry.get_sample_value("bgworkers_outbox_pruned_total") == 3


def test_a_delayed_row_is_sent_to_the_delay_queue_with_its_eta(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        enqueue(session, outbox_probe, "later", delay_ms=60_000)
        session.commit()
    publisher = MemoryPublisher()
    relay(db_engine, publisher, Clock(), use_lease=False).publish_batch()
    [[item]] = publisher.batches
    [row] = stored(db_engine)
    assert item.eta_ms == int(row.available_at.timestamp() * 1000)
    routing_key, body = delayed_envelope(item)
    envelope = json.loads(body)
    assert routing_key == envelope["queue_name"] == "maintenance.DQ"
    assert envelope["options"]["eta"] == item.eta_ms


def test_run_survives_failures_and_stops_when_asked(db_engine: Engine) -> None:
    add(db_engine, 2)
    publisher = MemoryPublisher()
    publisher.down = True
    loop = Relay(
        engine=lambda: db_engine,
        publisher=publisher,
        config=RelayConfig(use_lease=True, poll_interval_s=0.05),
        wakeup=threading.Event(),
    )
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))
    thread.start()
    try:
        from tests.platform_helpers import wait_for

        wait_for(lambda: stored(db_engine)[0].attempts >= 2, what="retried attempts")
        publisher.down = False
        wait_for(lambda: all(r.published_at for r in stored(db_engine)), what="the recovery")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_backlog_collector_reports_what_it_read() -> None:
    collector = OutboxBacklogCollector(lambda: Backlog(7, 42.5), interval_s=60, start=False)
    registry = CollectorRegistry()
    registry.register(collector)
    assert registry.get_sample_value("bgworkers_outbox_backlog_messages") is None  # not read yet
    collector.refresh()
    assert registry.get_sample_value("bgworkers_outbox_backlog_messages") == 7
    assert registry.get_sample_value("bgworkers_outbox_backlog_oldest_age_seconds") == 42.5


class FailingAfter(MemoryPublisher):
    """Takes ``good`` batches, then refuses every further one."""

    def __init__(self, good: int) -> None:
        super().__init__()
        self.good = good

    def publish(self, batch: Sequence[Outgoing]) -> None:
        self.down = len(self.batches) >= self.good
        super().publish(batch)


def test_drain_pipelines_batches_in_order_and_stops_at_a_failure(db_engine: Engine) -> None:
    add(db_engine, 7)
    publisher, clock = FailingAfter(good=2), Clock()
    one = relay(db_engine, publisher, clock, batch_size=2, use_lease=False)
    with pytest.raises(PublishError):
        one.drain()
    rows = stored(db_engine)
    assert [r.published_at is not None for r in rows] == [True] * 4 + [False] * 3
    assert [r.last_error for r in rows[4:]] == ["broker down", "broker down", None]
    publisher.good = 10
    assert one.drain() == 3
    one.close()
    keys = [json.loads(item.body)["args"][0] for b in publisher.batches for item in b]
    assert keys == [f"k{i}" for i in range(7)]  # in id order, each once
    assert all(r.published_at is not None for r in stored(db_engine))


class FrozenPublisher(MemoryPublisher):
    """Takes a batch and then hangs until released, as a relay whose host was cut off."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()
        self.release = threading.Event()

    def publish(self, batch: Sequence[Outgoing]) -> None:
        super().publish(batch)
        self.holding.set()
        self.release.wait(30)


def test_a_frozen_relay_does_not_hold_its_rows_past_the_claim_timeout(
    postgres_engine: Engine,
) -> None:
    """The batch of a relay that stopped answering mid-publish is locked by its open
    transaction; PostgreSQL ends that transaction after ``claim_idle_timeout_s``, so another
    relay publishes the rows then (once more: at least once), and the frozen relay's late
    mark fails instead of committing."""
    add(postgres_engine, 3)
    clock = Clock()
    frozen_publisher = FrozenPublisher()
    frozen = relay(
        postgres_engine, frozen_publisher, clock, use_lease=False, claim_idle_timeout_s=1.0
    )
    errors: list[BaseException] = []

    def publish_and_freeze() -> None:
        try:
            frozen.publish_batch()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=publish_and_freeze)
    thread.start()
    assert frozen_publisher.holding.wait(10)
    other_publisher = MemoryPublisher()
    other = relay(postgres_engine, other_publisher, clock, use_lease=False)
    assert other.publish_batch() == 0  # locked by the frozen relay's transaction
    deadline = time.monotonic() + 10
    while other.publish_batch() == 0:
        assert time.monotonic() < deadline, "the frozen relay's rows stayed locked"
        time.sleep(0.2)
    assert [item.message_id for item in other_publisher.batches[0]] == [
        item.message_id for item in frozen_publisher.batches[0]
    ]
    frozen_publisher.release.set()
    thread.join(30)
    assert len(errors) == 1 and "terminat" in str(errors[0]).lower(), errors
    assert all(
        row.published_at is not None and row.attempts == 1 for row in stored(postgres_engine)
    )
