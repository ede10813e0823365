"""Poison messages against a real RabbitMQ and a real worker: none stalls, kills or vanishes.

Messages are published straight to the queues with pika, as a hostile or buggy producer
would. After each batch: a valid message on the same queue is still served, every message
sent is either processed or in ``<queue>.XQ``, and the worker has all its threads.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from bgworkers import queues
from bgworkers.brokers.rabbitmq import ScreeningRabbitmqBroker
from bgworkers.errors import MessageTooLarge
from bgworkers.settings import get_settings
from bgworkers.stack.broker import build_broker
from bgworkers.tasks import task
from tests.platform_helpers import captured_json_logs, wait_for

pytestmark = pytest.mark.integration
THREADS = 4
MAX_BYTES = get_settings().message_max_bytes


@dataclass
class Served:
    """A broker of its own (bgworkers' stack, every queue) with a worker and two actors
    per queue: ``target_<queue>(item_id: int)`` and ``probe_<queue>(token: int)``."""

    broker: ScreeningRabbitmqBroker
    worker: dramatiq.Worker
    channel: Any
    runs: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0

    def publish(self, queue: str, body: bytes) -> None:
        self.channel.basic_publish(
            exchange="", routing_key=queue, body=body, properties=pika.BasicProperties()
        )
        self.sent += 1

    def dead_letters(self) -> int:
        return sum(self.broker.get_queue_message_counts(q)[2] for q in queues.ALL)

    def waiting(self) -> int:
        return sum(sum(self.broker.get_queue_message_counts(q)[:2]) for q in queues.ALL)

    def probe(self, queue: str) -> None:
        """Send a valid message and wait until it ran: the queue is not blocked."""
        token = random.getrandbits(30)
        self.publish(queue, envelope(queue, f"probe_{queue}", [token]))
        wait_for(lambda: (f"probe_{queue}", token) in self.runs, timeout_s=30, what="the probe")

    def accounted(self) -> bool:
        with self.lock:
            processed = len(self.runs)
        return self.waiting() == 0 and processed + self.dead_letters() == self.sent

    def threads_alive(self) -> bool:
        workers = self.worker.workers
        consumers = self.worker.consumers.values()
        return len(workers) == THREADS and all(t.is_alive() for t in [*workers, *consumers])


def envelope(queue: str, actor: str, args: list[Any], **fields: Any) -> bytes:
    data: dict[str, Any] = {
        "queue_name": queue,
        "actor_name": actor,
        "args": args,
        "kwargs": {},
        "options": {},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": 1_764_000_000_000,
    }
    data.update(fields)
    return json.dumps(data).encode()


@pytest.fixture
def served(rabbitmq_url: str, registry: CollectorRegistry) -> Iterator[Served]:
    broker = build_broker(get_settings())
    holder: list[Served] = []

    def recorder(name: str) -> Any:
        def run(value: int) -> None:
            with holder[0].lock:
                holder[0].runs.append((name, value))

        run.__name__ = name
        return run

    for queue in queues.ALL:
        task(queue=queue, broker=broker, max_retries=0)(recorder(f"target_{queue}"))
        task(queue=queue, broker=broker, max_retries=0)(recorder(f"probe_{queue}"))
    for queue in queues.ALL:
        broker.flush(queue)
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=THREADS)
    # The test publishes on this connection after waits of minutes, during which nothing
    # drives its I/O loop: without heartbeats RabbitMQ cannot drop it as dead.
    parameters = pika.URLParameters(rabbitmq_url)
    parameters.heartbeat = 0
    connection = pika.BlockingConnection(parameters)
    holder.append(Served(broker=broker, worker=worker, channel=connection.channel()))
    worker.start()
    try:
        yield holder[0]
    finally:
        worker.stop()
        connection.close()
        for queue in queues.ALL:
            broker.flush(queue)
        broker.close()


def dead_letter_metric(registry: CollectorRegistry) -> float:
    return sum(
        sample.value
        for family in registry.collect()
        if family.name == "bgworkers_messages_dead_lettered"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def metric_labels(registry: CollectorRegistry) -> set[tuple[str, str]]:
    return {
        (sample.labels.get("queue", ""), sample.labels.get("actor", ""))
        for family in registry.collect()
        if family.name.startswith("bgworkers_message")
        for sample in family.samples
        if "actor" in sample.labels
    }


def bad_bodies(queue: str) -> list[bytes]:
    """One of each kind of poison seen in the wild, for ``queue``."""
    target = f"target_{queue}"
    return [
        b"{not json",
        b'{"a": "\xff\xfe"}',
        b"[1, 2, 3]",
        b"null",
        b'{"queue_name": "' + queue.encode() + b'"}',
        envelope(queue, target, [1], options=5),
        envelope(queue, [target], [1]),  # type: ignore[arg-type]
        envelope(queue, "no_such_actor", [1]),
        envelope("nowhere", target, [1]),
        envelope(queues.FILES if queue != queues.FILES else queues.SYNC, target, [1]),
        envelope(queue, target, [1], options={"throws": "ValueError"}),
        envelope(queue, target, [1], options={"retries": -1}),
        envelope(queue, target, [1], options={"retries": "abc"}),
        envelope(queue, target, [1], options={"eta": "soon"}),
        envelope(queue, target, ["x" * 1000]),  # InvalidArguments: permanent
        envelope(queue, target, [2**70]),  # out of the database's integer range
        envelope(queue, target, [[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]),
        envelope(queue, target, ["\ud800"]),  # a lone surrogate, spelled as JSON allows
        b"[" * 50_000 + b"]" * 50_000,
    ]


@pytest.mark.timeout(600)
def test_a_burst_of_mixed_bad_messages_on_every_queue_is_fully_accounted_for(
    served: Served, registry: CollectorRegistry
) -> None:
    per_queue = 1_000
    good = 0
    with captured_json_logs() as logs:
        for queue in queues.ALL:
            kinds = bad_bodies(queue)
            for i in range(per_queue):
                if i % 10 == 0:
                    served.publish(queue, envelope(queue, f"target_{queue}", [i]))
                    good += 1
                else:
                    served.publish(queue, kinds[i % len(kinds)])
        wait_for(served.accounted, timeout_s=300, what="every message processed or in .XQ")
        for queue in queues.ALL:
            served.probe(queue)
    dead = served.dead_letters()
    lanes = len(queues.ALL)
    assert served.sent == lanes * per_queue + lanes  # the burst and one probe per queue
    assert len(served.runs) == good + lanes
    assert len(served.runs) + dead == served.sent
    assert dead == lanes * per_queue - good
    assert dead_letter_metric(registry) == dead
    assert served.threads_alive()
    actors = set(served.broker.actors) | {"unknown"}
    for queue, actor in metric_labels(registry):
        assert queue in queues.ALL and actor in actors, (queue, actor)
    # No consumer error loop, no middleware crash, no thread death along the way.
    assert not [line for line in logs if line["level"] == "critical"]


@pytest.mark.timeout(300)
def test_a_one_megabyte_argument_is_dead_lettered_and_the_next_message_is_served(
    served: Served,
) -> None:
    queue = queues.EMAIL
    with captured_json_logs() as logs:
        # Under the size cap, so it reaches the actor: a str where an id belongs.
        served.publish(queue, envelope(queue, f"target_{queue}", ["x" * 1_000_000]))
        # Over the cap: refused before decoding.
        served.publish(queue, envelope(queue, f"target_{queue}", ["y" * (MAX_BYTES + 1)]))
        wait_for(lambda: served.dead_letters() == 2, timeout_s=120, what="both in email.XQ")
        served.probe(queue)
    assert served.threads_alive()
    longest = max(len(json.dumps(line)) for line in logs)
    assert longest < 40_000, longest
    [too_large] = [line for line in logs if line.get("reason") == "too_large"]
    assert too_large["size_bytes"] > MAX_BYTES
    assert str(too_large["size_bytes"]) in too_large["error"]
    [invalid] = [line for line in logs if line.get("error_type") == "InvalidArguments"]
    assert invalid["outcome"] == "dead_lettered"


def test_sending_a_message_over_the_cap_raises_and_sends_nothing(served: Served) -> None:
    actor = served.broker.get_actor(f"target_{queues.EMAIL}")
    with pytest.raises(MessageTooLarge, match="BGW_MESSAGE_MAX_BYTES"):
        actor.send("z" * MAX_BYTES)
    assert served.broker.get_queue_message_counts(queues.EMAIL) == (0, 0, 0)


# --- property test ---------------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
OPTION_NAMES = [
    "retries",
    "max_retries",
    "min_backoff",
    "max_backoff",
    "time_limit",
    "max_age",
    "eta",
    "throws",
    "retry_when",
    "broker_priority",
    "notify_shutdown",
    "pipe_target",
    "on_failure",
    "bgw_tick",
    "traceback",
    "anything_else",
]
HUGE = st.sampled_from([10_000, 500_000, MAX_BYTES + 10]).map(lambda n: "h" * n)
DEEP = st.integers(min_value=10, max_value=3_000).map(lambda n: "[" * n + "]" * n)


@st.composite
def envelopes(draw: st.DrawFn, queue: str) -> bytes:
    """Bytes to publish on ``queue``: anything from noise to an almost valid envelope."""
    kind = draw(st.sampled_from(["noise", "json", "envelope", "envelope", "envelope"]))
    if kind == "noise":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    actor = draw(st.sampled_from([f"target_{queue}", f"probe_{queue}", "nope"]) | JSON)
    fields: dict[str, Any] = {
        "queue_name": draw(st.just(queue) | st.sampled_from(queues.ALL) | JSON),
        "actor_name": actor,
        "args": draw(st.lists(st.integers(0, 10**6) | JSON | HUGE, max_size=2) | JSON),
        "kwargs": draw(st.just({}) | JSON),
        "options": draw(
            st.dictionaries(st.sampled_from(OPTION_NAMES), JSON | st.integers(-5, 10**7)) | JSON
        ),
        "message_id": draw(st.uuids().map(str) | JSON),
        "message_timestamp": draw(st.integers(0, 2**45) | JSON),
    }
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2, unique=True)):
        del fields[name]
    body = json.dumps(fields).encode()
    mangle = draw(st.sampled_from(["none", "none", "invalid_utf8", "deep", "surrogate"]))
    if mangle == "invalid_utf8":
        cut = draw(st.integers(0, len(body)))
        body = body[:cut] + b"\xc3\x28" + body[cut:]
    elif mangle == "deep":
        body = body.replace(b'"args": [', b'"args": [' + draw(DEEP).encode() + b", ", 1)
    elif mangle == "surrogate":
        body = body.replace(b'"kwargs": {', b'"kwargs": {"s": "\\udfff", ', 1).replace(b", }", b"}")
    return body


def test_generated_envelopes_never_stall_kill_or_vanish(served: Served) -> None:
    @settings(
        max_examples=120,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def batch(data: st.DataObject) -> None:
        queue = data.draw(st.sampled_from(queues.ALL))
        for body in data.draw(st.lists(envelopes(queue), min_size=1, max_size=8)):
            served.publish(queue, body)
        served.probe(queue)
        wait_for(served.accounted, timeout_s=60, what="every message processed or in .XQ")
        assert served.threads_alive()

    with captured_json_logs():
        batch()
