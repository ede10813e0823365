"""Several RabbitMQ nodes in BGW_BROKER_URL: parsing, parameters, and node names in logs."""

from __future__ import annotations

import pytest

from bgworkers.brokers.broker_nodes import connection_parameters, node_of
from bgworkers.errors import ConfigurationError
from bgworkers.settings import broker_urls, describe_url, load_settings
from bgworkers.stack.broker import build_broker

THREE = (
    "amqp://u:secret@10.240.0.1:5740/bgw; amqp://u:secret@10.240.0.1:5741/bgw;"
    "amqps://u:secret@node3.example:5671/bgw?heartbeat=30;"
)


def test_urls_are_split_on_semicolons_and_trimmed() -> None:
    assert broker_urls(THREE) == [
        "amqp://u:secret@10.240.0.1:5740/bgw",
        "amqp://u:secret@10.240.0.1:5741/bgw",
        "amqps://u:secret@node3.example:5671/bgw?heartbeat=30",
    ]
    assert broker_urls("amqp://127.0.0.1/") == ["amqp://127.0.0.1/"]


@pytest.mark.parametrize("text", ["", " ; ", "http://u:secret@h/", "amqp://a/;127.0.0.1:5672"])
def test_bad_lists_are_refused_without_showing_the_password(text: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        broker_urls(text)
    assert "secret" not in str(caught.value)


def test_parameters_per_node_keep_their_query_and_take_overrides() -> None:
    params = connection_parameters(THREE, socket_timeout=3, connection_attempts=1)
    assert [(p.host, p.port, p.virtual_host) for p in params] == [
        ("10.240.0.1", 5740, "bgw"),
        ("10.240.0.1", 5741, "bgw"),
        ("node3.example", 5671, "bgw"),
    ]
    assert params[2].heartbeat == 30 and params[2].ssl_options is not None
    assert {p.socket_timeout for p in params} == {3}
    assert {p.connection_attempts for p in params} == {1}


def test_node_names_carry_no_credentials() -> None:
    class Impl:
        params = connection_parameters(THREE)[1]

    class Blocking:
        _impl = Impl()

    assert node_of(Blocking()) == "10.240.0.1:5741/bgw"
    assert node_of(object()) == "unknown"
    assert describe_url("amqp://u:secret@h:1/v") == "amqp://h:1/v"


def test_the_broker_gets_every_node_and_the_setting_is_checked() -> None:
    broker = build_broker(load_settings(broker_url=THREE))
    assert [p.port for p in broker.parameters] == [5740, 5741, 5671]
    with pytest.raises(ConfigurationError) as caught:
        load_settings(broker_url="amqp://a/;redis://u:secret@b/")
    assert "BGW_BROKER_URL" in str(caught.value) and "secret" not in str(caught.value)


def test_every_client_skips_a_dead_node_and_says_where_it_went(rabbitmq_url: str) -> None:
    from bgworkers.brokers.broker_nodes import probe_broker_problem
    from bgworkers.brokers.cluster_broker import ClusterRabbitmqBroker
    from bgworkers.monitoring.queue_depth import read_depths_amqp
    from bgworkers.outbox.publishers import Outgoing, RabbitmqConfirmPublisher
    from tests.platform_helpers import captured_json_logs, free_port

    live = connection_parameters(rabbitmq_url)[0]
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/{live.virtual_host}"
    urls = f"{dead};{rabbitmq_url}"
    queue = "bgw_nodes_probe"
    broker = ClusterRabbitmqBroker(url=broker_urls(urls), confirm_delivery=True, middleware=[])
    publisher = RabbitmqConfirmPublisher(
        urls, declare=lambda q: broker.declare_queue(q, ensure=True), connect_timeout_s=3
    )
    try:
        with captured_json_logs() as logs:
            broker.declare_queue(queue, ensure=True)
            body = b'{"not": "read by anyone"}'
            publisher.publish([Outgoing(queue=queue, message_id="m1", body=body)])
            consumer = broker.consume(queue, prefetch=1, timeout=100)
            consumer.close()
        assert probe_broker_problem(urls, timeout_s=3) is None
        assert read_depths_amqp(urls, [queue])[0].ready == 1
    finally:
        publisher.close()
        broker.channel.queue_delete(queue)
        broker.channel.queue_delete(f"{queue}.DQ")
        broker.channel.queue_delete(f"{queue}.XQ")
        broker.close()
    connected = [line for line in logs if line["event"] == "broker_connected"]
    node = f"{live.host}:{live.port}/" + ("" if live.virtual_host == "/" else live.virtual_host)
    assert {line["purpose"] for line in connected} == {"publish", "outbox_relay", "consume"}
    assert {line["node"] for line in connected} == {node}
    assert all("guest" not in str(line) for line in connected)


def test_no_node_answering_names_the_nodes_tried_without_credentials() -> None:
    """pika says nothing (``AMQPConnectionError()``) when no node accepts the connection; the
    error bgworkers raises names each node, and the reading that failed logs that text."""
    import socket

    import pika.exceptions

    from bgworkers.brokers.broker_nodes import open_blocking_connection
    from bgworkers.logs.failure_reasons import failure_reason

    closed = []
    for _ in range(2):  # two ports nothing listens on
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed.append(probe.getsockname()[1])
    text = f"amqp://u:secret@127.0.0.1:{closed[0]}/; amqp://u:secret@127.0.0.1:{closed[1]}/bgw"
    with pytest.raises(pika.exceptions.AMQPConnectionError) as raised:
        open_blocking_connection(text, connection_attempts=1, socket_timeout=2)
    reason = failure_reason(raised.value)
    assert reason == (
        f"AMQPConnectionError: no connection to 127.0.0.1:{closed[0]}/, "
        f"127.0.0.1:{closed[1]}/bgw (refused, unreachable or timed out)"
    )
    assert "secret" not in reason


def test_a_failure_without_text_still_gets_a_reason() -> None:
    from bgworkers.logs.failure_reasons import failure_reason

    try:
        try:
            raise TimeoutError("read timed out")
        except TimeoutError:
            raise RuntimeError from None
    except RuntimeError as exc:
        assert failure_reason(exc) == "RuntimeError (no reason given)"
    try:
        try:
            raise TimeoutError("read timed out")
        except TimeoutError as cause:
            raise RuntimeError from cause
    except RuntimeError as exc:
        assert failure_reason(exc) == "RuntimeError: read timed out"
