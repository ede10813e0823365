"""Queue arguments per type, and the one line for a queue that exists with other arguments."""

from __future__ import annotations

import pika.exceptions
import pytest
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker

from bgworkers.brokers.cluster_broker import (
    ClusterRabbitmqBroker,
    QueueArgumentsMismatch,
    dead_letter_queue_arguments,
    mismatch_message,
    queue_arguments,
)
from bgworkers.settings import DEFAULT_DELIVERY_LIMIT, load_settings
from bgworkers.stack.broker import build_broker


def test_classic_arguments_are_dramatiqs_own() -> None:
    # Existing installs keep matching the queues dramatiq declared: same arguments exactly.
    dramatiq_broker = RabbitmqBroker(url="amqp://127.0.0.1:1/")
    assert queue_arguments("email", queue_type="classic", delivery_limit=20) == (
        dramatiq_broker._build_queue_arguments("email")  # type: ignore[no-untyped-call]
    )
    assert dead_letter_queue_arguments(queue_type="classic") == {"x-message-ttl": DEAD_MESSAGE_TTL}


def test_quorum_arguments_dead_letter_to_the_xq_at_least_once() -> None:
    assert queue_arguments("email", queue_type="quorum", delivery_limit=7) == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "email.XQ",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-delivery-limit": 7,
    }


def test_quorum_dead_letter_queue_keeps_dramatiqs_ttl_and_has_no_delivery_limit() -> None:
    arguments = dead_letter_queue_arguments(queue_type="quorum")
    assert arguments == {"x-queue-type": "quorum", "x-message-ttl": DEAD_MESSAGE_TTL}


def test_no_argument_a_quorum_queue_refuses() -> None:
    for arguments in (
        queue_arguments("q", queue_type="quorum", delivery_limit=20),
        dead_letter_queue_arguments(queue_type="quorum"),
    ):
        assert "x-max-priority" not in arguments
        assert "x-queue-mode" not in arguments  # classic-only (lazy queues)


def test_the_broker_declares_each_of_the_three_queues_with_its_arguments() -> None:
    declared: dict[str, tuple[bool, dict[str, object]]] = {}

    class RecordingChannel:
        def queue_declare(self, queue: str, durable: bool, arguments: dict[str, object]) -> None:
            declared[queue] = (durable, arguments)

    broker = ClusterRabbitmqBroker(
        url="amqp://127.0.0.1:1/", queue_type="quorum", delivery_limit=9, middleware=[]
    )
    broker.state.channel = RecordingChannel()
    broker._declare_queue("sync")
    broker._declare_dq_queue("sync")
    broker._declare_xq_queue("sync")
    assert declared == {
        "sync": (True, queue_arguments("sync", queue_type="quorum", delivery_limit=9)),
        "sync.DQ": (True, queue_arguments("sync", queue_type="quorum", delivery_limit=9)),
        "sync.XQ": (True, dead_letter_queue_arguments(queue_type="quorum")),
    }


def test_precondition_failed_becomes_one_line_and_a_fresh_channel() -> None:
    reply = (
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'email' in vhost "
        "'prod': received the value 'quorum' of type 'longstr' but current is none"
    )

    class RefusingChannel:
        def queue_declare(self, **_: object) -> None:
            raise pika.exceptions.ChannelClosedByBroker(406, reply)

        is_open = False

    broker = ClusterRabbitmqBroker(url="amqp://127.0.0.1:1/", queue_type="quorum", middleware=[])
    broker.state.channel = channel = RefusingChannel()
    broker.channels.add(channel)
    with pytest.raises(QueueArgumentsMismatch) as caught:
        broker._declare_queue("email")
    message = str(caught.value)
    assert "\n" not in message
    assert "queue 'email' in vhost 'prod' already exists as a classic queue" in message
    assert "x-queue-type is unset there, bgworkers declares 'quorum'" in message
    assert "docs/scaling.md" in message and "BGW_QUEUE_TYPE is 'quorum'" in message
    assert getattr(broker.state, "channel", None) is None  # the closed channel is dropped


def test_other_channel_errors_are_left_to_dramatiq() -> None:
    class ClosingChannel:
        def queue_declare(self, **_: object) -> None:
            raise pika.exceptions.ChannelClosedByBroker(403, "ACCESS_REFUSED")

    broker = ClusterRabbitmqBroker(url="amqp://127.0.0.1:1/", middleware=[])
    broker.state.channel = ClosingChannel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        broker._declare_queue("email")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-strategy' for queue 'q' in "
            "vhost '/': received none but current is the value 'at-least-once' of type 'longstr'",
            "exists as a quorum queue (x-dead-letter-strategy is 'at-least-once' there, "
            "bgworkers declares unset)",
        ),
        (
            "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'q' in vhost "
            "'/': received '5' but current is '20'",
            "exists with other arguments (x-delivery-limit is '20' there, bgworkers declares '5')",
        ),
        ("PRECONDITION_FAILED - something new", "(something new)"),
    ],
)
def test_mismatch_message_names_the_argument(reply: str, expected: str) -> None:
    assert expected in mismatch_message("q", queue_type="classic", broker_reply=reply)


def test_settings_choose_the_type_and_bound_the_delivery_limit() -> None:
    settings = load_settings(queue_type="quorum")
    broker = build_broker(settings)
    assert (broker.queue_type, broker.delivery_limit) == ("quorum", DEFAULT_DELIVERY_LIMIT)
    assert build_broker(load_settings()).queue_type == "classic"
    with pytest.raises(Exception, match="BGW_QUEUE_DELIVERY_LIMIT"):
        load_settings(queue_delivery_limit=1)
    with pytest.raises(Exception, match="BGW_QUEUE_TYPE"):
        load_settings(queue_type="mirrored")


def test_priorities_are_refused_with_quorum_queues() -> None:
    with pytest.raises(ValueError, match="no priorities"):
        ClusterRabbitmqBroker(url="amqp://127.0.0.1:1/", queue_type="quorum", max_priority=5)
