from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bgworkers import queues
from bgworkers.monitoring.queue_depth import (
    QueueDepth,
    QueueDepthCollector,
    read_depths_amqp,
    read_depths_management,
    reader_from_settings,
)
from bgworkers.settings import get_settings
from bgworkers.stack.broker import build_broker
from bgworkers.tasks import task
from tests.platform_helpers import wait_for


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


MANAGEMENT_ROWS = [
    {
        "name": "email",
        "type": "quorum",
        "messages_ready": 12,
        "messages_unacknowledged": 3,
        "consumers": 2,
    },
    {"name": "email.DQ", "messages_ready": 1, "messages_unacknowledged": 4},
    {"name": "email.XQ", "messages_ready": 2, "messages_unacknowledged": 0},
]


@pytest.fixture
def management_api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server answering ``GET /api/queues/<vhost>`` as RabbitMQ's management
    plugin does (JSON rows; 401 without Basic credentials or with the password ``wrong``; a
    redirect for the vhost ``moved``); yields its URL and the requests."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "authorization": self.headers["Authorization"]})
            authorization = self.headers["Authorization"] or ""
            if self.path.startswith("/api/queues/moved"):
                self.send_response(302)
                self.send_header("Location", "/elsewhere/api/queues/moved")
                self.end_headers()
                return
            if not authorization.startswith("Basic ") or b":wrong" in base64.b64decode(
                authorization.removeprefix("Basic ")
            ):
                self.send_response(401)
                self.end_headers()
                return
            body = json.dumps(MANAGEMENT_ROWS).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", seen
    finally:
        server.shutdown()
        server.server_close()


def test_management_reading_speaks_the_api_wire_format(
    management_api: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = management_api
    depths = {d.queue: d for d in read_depths_management(url, "amqp://ops:p%40ss@rabbit:5672/prod")}
    assert depths["email"] == QueueDepth("email", 12, 5, 2, 3, consumers=2, queue_type="quorum")
    # No row for "sync": RabbitMQ does not have it yet, which is not an empty queue.
    assert depths["sync"] == QueueDepth(
        "sync", 0, 0, 0, 0, consumers=0, oldest_age_s=0.0, declared=False
    )
    assert depths["email"].declared
    assert seen[0]["path"].startswith("/api/queues/prod?columns=name%2Ctype%2Cmessages_ready")
    assert base64.b64decode(seen[0]["authorization"].removeprefix("Basic ")) == b"ops:p@ss"


def test_a_redirect_is_not_followed_with_the_credentials(
    management_api: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = management_api
    with pytest.raises(OSError, match="302"):
        read_depths_management(url, "amqp://ops:secret@rabbit:5672/moved")
    assert [request["path"].split("?")[0] for request in seen] == ["/api/queues/moved"]


@pytest.mark.integration
def test_management_reading_of_the_real_api_sees_a_message_held_by_a_consumer(
    rabbitmq_url: str,
) -> None:
    """RabbitMQ's own management API (on the broker's host, port 15672) answers the read; a
    message delivered and not acknowledged counts as unacked, which AMQP cannot tell."""
    import pika

    from bgworkers.brokers.broker_nodes import open_blocking_connection

    queue = "test-queue-depth-held"
    connection = open_blocking_connection(rabbitmq_url)
    try:
        channel = connection.channel()
        channel.queue_declare(queue, auto_delete=True)
        channel.basic_publish("", queue, b"held")
        channel.basic_publish("", queue, b"waiting")
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(queue, lambda *args: None)
        connection.process_data_events(time_limit=0.5)
        try:
            (depth,) = read_depths_management("http://127.0.0.1:15672", rabbitmq_url, [queue])
        except OSError as exc:
            pytest.skip(f"no management API on 127.0.0.1:15672 ({exc})")

        # The management API's figures lag by its stats interval (5 s by default).
        def counted() -> bool:
            nonlocal depth
            (depth,) = read_depths_management("http://127.0.0.1:15672", rabbitmq_url, [queue])
            return (depth.ready, depth.unacked, depth.consumers) == (1, 1, 1)

        wait_for(counted, timeout_s=10, what="the management API to count the queue")
        assert (depth.ready, depth.unacked, depth.consumers) == (1, 1, 1)
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError):
            connection.close()


def test_reader_falls_back_to_amqp_when_the_api_refuses(
    management_api: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 401 from the API (wrong credentials) is an ``OSError`` like a refused connection:
    the reader logs it once and answers from AMQP."""
    import bgworkers.monitoring.queue_depth as queue_depth

    url, seen = management_api
    amqp_reads: list[str] = []

    def read_amqp(broker_url: str) -> list[QueueDepth]:
        amqp_reads.append(broker_url)
        return [QueueDepth("email", 7, 0, 0, None)]

    monkeypatch.setattr(queue_depth, "read_depths_amqp", read_amqp)
    read = reader_from_settings("amqp://ops:wrong@127.0.0.1:5672/", url)
    assert read() == [QueueDepth("email", 7, 0, 0, None)]
    assert read() == [QueueDepth("email", 7, 0, 0, None)]
    assert len(seen) == 2  # the API is asked every time, AMQP answers while it refuses
    assert len(amqp_reads) == 2


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


@pytest.mark.integration
def test_a_connection_lost_while_reading_raises_its_own_error(rabbitmq_url: str) -> None:
    """Not pika's "connection already closed" from the clean-up, which hid the cause."""
    from urllib.parse import urlsplit

    import pika.exceptions

    from tests.tcp_relay import TcpRelay

    url = urlsplit(rabbitmq_url)
    relay = TcpRelay((url.hostname or "127.0.0.1", url.port or 5672)).start()
    relayed = url._replace(netloc=f"{url.username}:{url.password}@127.0.0.1:{relay.port}")

    def names() -> Iterator[str]:
        yield queues.FILES
        relay.cut()  # the connection is reset between two queues
        yield queues.EMAIL

    try:
        with pytest.raises(pika.exceptions.AMQPError) as raised:
            read_depths_amqp(relayed.geturl(), names())
    finally:
        relay.stop()
    assert not isinstance(raised.value, pika.exceptions.ConnectionWrongStateError)
