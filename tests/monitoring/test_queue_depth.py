from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client import CollectorRegistry

from bgworkers import queues
from bgworkers.broker import build_broker
from bgworkers.monitoring.queue_depth import (
    QueueDepth,
    QueueDepthCollector,
    read_depths_amqp,
    read_depths_management,
)
from bgworkers.settings import get_settings
from bgworkers.tasks import task


@pytest.mark.integration
def test_amqp_reading_counts_ready_messages(rabbitmq_url: str) -> None:
    broker = build_broker(get_settings())
    broker.declare_queue(queues.FILES)
    broker.flush(queues.FILES)
    try:
        actor = task(queue=queues.FILES, broker=broker)(lambda: None)
        for _ in range(3):
            actor.send()
        actor.send_with_options(delay=60_000)
        depths = {d.queue: d for d in read_depths_amqp(rabbitmq_url)}
    finally:
        broker.flush(queues.FILES)
        broker.close()
    assert depths["files"].ready == 3
    assert depths["files"].delayed == 1
    assert depths["files"].dead_letters == 0
    assert depths["files"].unacked is None  # AMQP cannot tell
    assert depths["files"].consumers == 0
    assert set(depths) == set(queues.ALL)


def test_management_reading_speaks_the_api_wire_format() -> None:
    seen: list[httpx.Request] = []

    def management_api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        rows = [
            {"name": "email", "messages_ready": 12, "messages_unacknowledged": 3, "consumers": 2},
            {"name": "email.DQ", "messages_ready": 1, "messages_unacknowledged": 4},
            {"name": "email.XQ", "messages_ready": 2, "messages_unacknowledged": 0},
        ]
        return httpx.Response(200, content=json.dumps(rows))

    client = httpx.Client(transport=httpx.MockTransport(management_api))
    depths = {
        d.queue: d
        for d in read_depths_management(
            "http://rabbit:15672/", "amqp://ops:pw@rabbit:5672/prod", client=client
        )
    }
    assert depths["email"] == QueueDepth("email", 12, 5, 2, 3, consumers=2)
    assert depths["sync"] == QueueDepth("sync", 0, 0, 0, 0, consumers=0)
    assert seen[0].url.path == "/api/queues/prod"
    assert seen[0].headers["authorization"].startswith("Basic ")


def test_collector_serves_the_last_reading_and_counts_failures() -> None:
    readings: list[list[QueueDepth] | Exception] = [
        [QueueDepth("email", 4, 1, 2, None)],
        RuntimeError("rabbit down"),
    ]

    def read() -> list[QueueDepth]:
        result = readings.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    collector = QueueDepthCollector(read, interval_s=60, start=False)
    registry = CollectorRegistry()
    registry.register(collector)
    collector.refresh()
    collector.refresh()  # fails: the previous reading stays
    assert registry.get_sample_value("bgworkers_queue_ready_messages", {"queue": "email"}) == 4
    assert (
        registry.get_sample_value("bgworkers_queue_dead_letter_messages", {"queue": "email"}) == 2
    )
    assert registry.get_sample_value("bgworkers_queue_unacked_messages", {"queue": "email"}) is None
    assert registry.get_sample_value("bgworkers_queue_depth_read_errors_total") == 1
    assert registry.get_sample_value("bgworkers_queue_depth_last_success_timestamp_seconds") > 0
