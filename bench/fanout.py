"""Fan-out through the outbox: rows written per second, and relay publishes per second.

Writes N messages (default 100,000) with ``enqueue_many`` in one transaction, relays them to
the real RabbitMQ with the production relay (one AMQP transaction per batch), then compares:
the same messages with the relay's publisher alone (publishing only, no
database), with one AMQP transaction per batch instead (publishing only), and today's
``actor.send`` loop (one confirm per message, fewer messages: it is slow).

Isolation: its queues are named ``bench_fanout_<random>`` (plus ``.DQ``/``.XQ``) in the vhost
of ``BGW_BROKER_URL``; they are created here (it stops if the name is taken) and deleted at the
end, so it never purges or deletes a queue it did not create. The database is a schema
of its own in PostgreSQL (``BGW_TEST_POSTGRES_URL``, default the local ``test`` database),
dropped at the end, or a temporary SQLite file when PostgreSQL does not answer.
Usage: python bench/fanout.py [N] [confirm-each N]
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dramatiq
import pika
from _isolation import quiet_logs
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

import bgworkers
from bgworkers import migrations
from bgworkers.db.engine import make_engine
from bgworkers.outbox import enqueue_many
from bgworkers.outbox.publishers import (
    Outgoing,
    PublishError,
    QueueDeclarations,
    RabbitmqConfirmPublisher,
    delayed_envelope,
)
from bgworkers.outbox.relay import Relay, RelayConfig
from bgworkers.settings import get_settings

POSTGRES_URL = os.environ.get(
    "BGW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def bench_database() -> Iterator[tuple[Engine, str]]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = make_engine(POSTGRES_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - any failure: fall back to SQLite and say so
        print(f"PostgreSQL unavailable ({type(exc).__name__}); using SQLite")
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(f"sqlite:///{tmp}/bench.db")
            migrations.upgrade(engine)
            yield engine, "sqlite"
            engine.dispose()
        return
    engine = make_engine(POSTGRES_URL)

    @event.listens_for(engine, "connect")
    def _search_path(dbapi_connection, _):  # type: ignore[no-untyped-def]
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f'SET search_path TO "{schema}"')
        dbapi_connection.commit()

    try:
        migrations.upgrade(engine)
        yield engine, "postgresql"
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def delete_queues(url: str, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
        channel.queue_delete(name)
    connection.close()


def queue_exists(url: str, queue: str) -> bool:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code != 404:
            raise
        return False
    finally:
        if connection.is_open:
            connection.close()
    return True


def queue_depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    depth = connection.channel().queue_declare(queue, passive=True).method.message_count
    connection.close()
    return int(depth)


def purge(url: str, queue: str) -> None:
    """Empty the benchmark's own ``bench_fanout_<random>`` queue between phases (never another)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().queue_purge(queue)
    connection.close()


class TxPublisher:
    """The alternative measured against the relay's confirms: one AMQP transaction per batch."""

    def __init__(
        self,
        url: str,
        *,
        declare: Callable[[str], None],
        connect_timeout_s: float = 5.0,
    ) -> None:
        self._parameters = pika.URLParameters(url)
        self._parameters.socket_timeout = connect_timeout_s
        self._parameters.blocked_connection_timeout = 30
        self._queues = QueueDeclarations(declare)
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._returned: list[str] = []

    def _open(self) -> Any:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self.close()
        self._connection = pika.BlockingConnection(self._parameters)
        channel = self._connection.channel()
        channel.add_on_return_callback(self._on_return)
        channel.tx_select()
        self._channel = channel
        return channel

    def _on_return(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        self._returned.append(str(properties.message_id))

    def publish(self, batch: Sequence[Outgoing]) -> None:
        try:
            self._queues.ensure(batch)
            channel = self._open()
            self._returned.clear()
            for item in batch:
                routing_key, body = delayed_envelope(item)
                channel.basic_publish(
                    exchange="",
                    routing_key=routing_key,
                    body=body,
                    properties=pika.BasicProperties(delivery_mode=2, message_id=item.message_id),
                    mandatory=True,
                )
            channel.tx_commit()
            assert self._connection is not None
            self._connection.process_data_events(time_limit=0)  # dispatches basic.return
        except (pika.exceptions.AMQPError, OSError, dramatiq.errors.ConnectionError) as exc:
            self.close()
            raise PublishError(f"publish failed: {type(exc).__name__}: {exc}") from exc
        if self._returned:
            self._queues.forget()  # a queue was deleted: declare again next time
            raise PublishError(f"{len(self._returned)} message(s) unroutable (no such queue)")

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            # Already broken: nothing to release on our side.
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()


def publish_only(publisher: RabbitmqConfirmPublisher | TxPublisher, items: list[Outgoing]) -> float:
    """Seconds to publish ``items`` in relay-sized batches, without the database."""
    size = get_settings().outbox_batch_size
    started = time.perf_counter()
    for start in range(0, len(items), size):
        publisher.publish(items[start : start + size])
    elapsed = time.perf_counter() - started
    publisher.close()
    return elapsed


def main() -> None:
    quiet_logs()
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    each_count = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    settings = get_settings()
    url = settings.broker_url.get_secret_value()
    broker = bgworkers.broker
    # Random, not the pid: a queue left by an earlier run with the same pid is not ours.
    queue = f"bench_fanout_{uuid.uuid4().hex[:8]}"
    if queue_exists(url, queue):
        raise SystemExit(f"queue {queue} exists already: not ours to purge; run again")

    def bench_fanout_noop(user_id: int) -> None:
        return None

    actor = dramatiq.actor(queue_name=queue, broker=broker)(bench_fanout_noop)
    broker.declare_queue(queue, ensure=True)
    try:
        with bench_database() as (engine, database):
            print(f"messages: {count}, database: {database}, queue: {queue}")
            started = time.perf_counter()
            with Session(engine) as session:
                enqueue_many(session, actor, ((i,) for i in range(count)))
                session.commit()
            enqueue_s = time.perf_counter() - started
            print(f"outbox enqueue: {enqueue_s:.2f} s, peak RSS {peak_rss_mib():.0f} MiB")

            publisher = RabbitmqConfirmPublisher(
                url, declare=lambda q: broker.declare_queue(q, ensure=True)
            )
            relay = Relay(
                engine=lambda: engine,
                publisher=publisher,
                config=RelayConfig(batch_size=settings.outbox_batch_size, use_lease=False),
            )
            started = time.perf_counter()
            published = 0
            while batch_count := relay.drain():
                published += batch_count
            relay_s = time.perf_counter() - started
            relay.close()
            depth = queue_depth(url, queue)
            assert published == count and depth == count, (published, depth)
            print(f"relay: {relay_s:.2f} s, queue depth {depth}, peak RSS {peak_rss_mib():.0f} MiB")
        purge(url, queue)

        bodies = [
            Outgoing(queue=queue, message_id=m.message_id, body=m.encode())
            for m in (actor.message(i) for i in range(count))
        ]
        confirm_s = publish_only(RabbitmqConfirmPublisher(url, declare=lambda q: None), bodies)
        purge(url, queue)
        tx_s = publish_only(TxPublisher(url, declare=lambda q: None), bodies)
        purge(url, queue)
        del bodies

        started = time.perf_counter()
        for i in range(each_count):
            actor.send(i)
        each_s = time.perf_counter() - started
    finally:
        broker.close()
        delete_queues(url, queue)
        print(f"bench_queue={queue} (deleted with its .DQ and .XQ)")

    size = settings.outbox_batch_size
    print(f"publish only, pipelined confirms, batches of {size}: {count / confirm_s:,.0f} msg/s")
    print(f"publish only, one AMQP transaction per {size}: {count / tx_s:,.0f} msg/s")
    print(f"confirm-each: {each_count} messages with actor.send in {each_s:.2f} s")
    relay_rate = count / relay_s
    each_rate = each_count / each_s
    print(f"relay / confirm-each: {relay_rate / each_rate:.1f}x")
    print(f"peak_rss_mib={peak_rss_mib():.0f}")
    print(f"outbox_enqueue_msgs_per_s={count / enqueue_s:.0f}")
    print(f"relay_confirmed_msgs_per_s={relay_rate:.0f}")
    print(f"confirm_each_msgs_per_s={each_rate:.0f}")


if __name__ == "__main__":
    main()
