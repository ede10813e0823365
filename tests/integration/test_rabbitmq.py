"""The platform against the real RabbitMQ: processing, retries, dead letters, bad messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import dramatiq
import pika
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers import queues
from bgworkers.errors import PermanentError
from bgworkers.maintenance.models import SchedulerHeartbeat
from bgworkers.tasks import task
from tests.platform_helpers import captured_json_logs, wait_for

pytestmark = pytest.mark.integration
QUEUE = queues.MAINTENANCE


def xq_bodies(broker: RabbitmqBroker) -> list[dict[str, object]]:
    channel = broker.channel
    bodies = []
    while True:
        method, _, body = channel.basic_get(f"{QUEUE}.XQ", auto_ack=True)
        if method is None:
            return bodies
        bodies.append(json.loads(body))


def test_message_sent_from_another_process_is_processed(
    app_broker: dramatiq.Broker, app_worker: dramatiq.Worker, sqlite_engine: Engine
) -> None:
    sender = "from bgworkers.maintenance.actors import heartbeat; heartbeat.send()"
    subprocess.run([sys.executable, "-c", sender], check=True, env=os.environ.copy(), timeout=60)

    def beat_recorded() -> bool:
        with Session(sqlite_engine) as session:
            return session.get(SchedulerHeartbeat, "scheduler") is not None

    wait_for(beat_recorded)


def test_failing_message_is_retried_with_backoff_then_dead_lettered(
    test_broker: RabbitmqBroker, registry
) -> None:
    attempts: list[float] = []

    def always_fails(item: int) -> None:
        attempts.append(time.monotonic())
        raise RuntimeError(f"cannot process {item}")

    actor = task(
        queue=QUEUE, broker=test_broker, max_retries=3, min_backoff_ms=200, max_backoff_ms=400
    )(always_fails)
    worker = dramatiq.Worker(test_broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        with captured_json_logs() as logs:
            actor.send(5)
            wait_for(lambda: test_broker.get_queue_message_counts(QUEUE)[2] == 1)
    finally:
        worker.stop()
    assert len(attempts) == 4
    # Each retry went through <queue>.DQ with a backoff within the actor's bounds.
    delays = [line["delay_ms"] for line in logs if line["event"] == "message_retry_scheduled"]
    assert len(delays) == 3
    assert all(0 < delay <= 400 for delay in delays), delays
    [dead] = xq_bodies(test_broker)
    assert dead["actor_name"] == "always_fails"
    assert dead["args"] == [5]
    outcomes = [line["outcome"] for line in logs if line["event"] == "message_processed"]
    assert outcomes == ["retried", "retried", "retried", "dead_lettered"]
    labels = {"queue": QUEUE, "actor": "always_fails"}
    assert registry.get_sample_value("bgworkers_messages_processed_total", labels) == 4
    assert registry.get_sample_value("bgworkers_messages_failed_total", labels) == 4
    assert registry.get_sample_value("bgworkers_messages_retried_total", labels) == 3
    assert registry.get_sample_value("bgworkers_messages_dead_lettered_total", labels) == 1
    assert registry.get_sample_value("bgworkers_messages_in_progress", labels) == 0


def test_invalid_arguments_and_permanent_errors_skip_retries(
    test_broker: RabbitmqBroker, registry
) -> None:
    runs: list[str] = []

    def needs_user(user_id: int) -> None:
        runs.append("needs_user")

    def refuses() -> None:
        runs.append("refuses")
        raise PermanentError("nothing to retry")

    needs = task(queue=QUEUE, broker=test_broker, max_retries=5)(needs_user)
    refuse = task(queue=QUEUE, broker=test_broker, max_retries=5)(refuses)
    worker = dramatiq.Worker(test_broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        needs.send("seven")
        needs.send()
        refuse.send()
        wait_for(lambda: test_broker.get_queue_message_counts(QUEUE)[2] == 3)
    finally:
        worker.stop()
    assert runs == ["refuses"]
    assert test_broker.get_queue_message_counts(QUEUE)[1] == 0  # nothing waiting to retry
    for actor_name, count in (("needs_user", 2), ("refuses", 1)):
        labels = {"queue": QUEUE, "actor": actor_name}
        assert registry.get_sample_value("bgworkers_messages_dead_lettered_total", labels) == count
        assert registry.get_sample_value("bgworkers_messages_retried_total", labels) == 0


def test_malformed_message_is_dead_lettered_and_logged(test_broker: RabbitmqBroker) -> None:
    worker = dramatiq.Worker(test_broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        with captured_json_logs() as logs:
            test_broker.channel.basic_publish(
                exchange="",
                routing_key=QUEUE,
                body=b"{not json",
                properties=pika.BasicProperties(delivery_mode=2),
            )
            wait_for(lambda: test_broker.get_queue_message_counts(QUEUE)[2] == 1)
    finally:
        worker.stop()
    _method, _, body = test_broker.channel.basic_get(f"{QUEUE}.XQ", auto_ack=True)
    assert body == b"{not json"  # kept as it came, nothing lost
    [refused] = [line for line in logs if line.get("reason") == "not_json"]
    assert refused["event"] == "message_processed"
    assert refused["outcome"] == "dead_lettered"
    assert refused["queue"] == QUEUE
    assert refused["excerpt"] == "{not json"
