"""Switching BGW_QUEUE_TYPE on existing queues is refused with one line, on a real node.

A RabbitMQ node of the test's own (port 5745): classic queues are declared first, as an
existing install has them; then a quorum-configured broker, publisher and worker meet them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest

from bgworkers.brokers.cluster_broker import ClusterRabbitmqBroker, QueueArgumentsMismatch
from tests.cli_helpers import run_command
from tests.outbox.rabbitmq_node import RabbitmqNode, private_node

pytestmark = pytest.mark.integration
NODE_PORT = 5745
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def node() -> Iterator[RabbitmqNode]:
    name = "bgwclustersingle@localhost"
    with private_node("bgwcluster-single-", name=name, port=NODE_PORT) as own:
        yield own


def queue_types(node: RabbitmqNode) -> dict[str, str]:
    out = subprocess.run(
        ["rabbitmqctl", "-n", node.name, "list_queues", "name", "type", "--formatter", "json"],
        check=True,
        capture_output=True,
        text=True,
        env=node._env(),
    ).stdout
    return {row["name"]: row["type"] for row in json.loads(out)}


def test_a_quorum_broker_refuses_classic_queues_and_keeps_working(node: RabbitmqNode) -> None:
    classic = ClusterRabbitmqBroker(url=node.url, confirm_delivery=True, middleware=[])
    quorum = ClusterRabbitmqBroker(
        url=node.url, confirm_delivery=True, queue_type="quorum", middleware=[]
    )
    try:
        classic.declare_queue("typed_email", ensure=True)
        with pytest.raises(QueueArgumentsMismatch) as caught:
            quorum.declare_queue("typed_email", ensure=True)
        message = str(caught.value)
        assert message.startswith(
            "queue 'typed_email' in vhost '/' already exists as a classic queue ("
        )
        assert "is unset there, bgworkers declares" in message
        assert "docs/scaling.md" in message
        # A send meets the same line, and nothing is published to the classic queue.
        sent = dramatiq.Message(
            queue_name="typed_email", actor_name="a", args=(), kwargs={}, options={}
        )
        with pytest.raises(QueueArgumentsMismatch):
            quorum.enqueue(sent)
        assert classic.get_queue_message_counts("typed_email") == (0, 0, 0)
        # The refused channel was dropped: the same broker declares other queues.
        quorum.declare_queue("typed_reminders", ensure=True)
        types = queue_types(node)
        assert types["typed_email"] == types["typed_email.DQ"] == "classic"
        assert types["typed_reminders"] == types["typed_reminders.XQ"] == "quorum"
        # And the other way round: classic arguments on a quorum queue.
        with pytest.raises(QueueArgumentsMismatch, match="already exists as a quorum queue"):
            classic.declare_queue("typed_reminders", ensure=True)
    finally:
        classic.close()
        quorum.close()


def test_a_worker_on_queues_of_the_other_type_exits_with_one_line(
    node: RabbitmqNode, tmp_path: Path
) -> None:
    env = {"BGW_BROKER_URL": node.url}
    assert run_command("migrate", tmp_path=tmp_path, **env).returncode == 0
    # The queues as a classic install declared them (the worker's own stack, classic).
    first = worker(tmp_path, env, seconds=0)
    assert first.returncode == 0, first.stderr[-2000:]
    assert queue_types(node).get("email") == "classic"

    refused = worker(tmp_path, {**env, "BGW_QUEUE_TYPE": "quorum"}, seconds=60)
    assert refused.returncode == 2, refused.stderr[-3000:]
    lines = [line for line in refused.stderr.splitlines() if line.startswith("bgworkers:")]
    assert len(lines) >= 1, refused.stderr[-3000:]
    assert "worker not started: queue " in lines[0]
    assert "queue 'email' in vhost '/' already exists as a classic queue" in lines[0]
    assert "Traceback" not in refused.stderr
    assert queue_types(node)["email"] == "classic"  # untouched


def worker(
    tmp_path: Path, env: dict[str, str], *, seconds: float
) -> subprocess.CompletedProcess[str]:
    """``dramatiq bgworkers`` until it exits by itself, or declare the queues and stop."""
    environment = {
        "BGW_DATA_DIR": str(tmp_path / "data"),
        "BGW_DATABASE_URL": f"sqlite:///{tmp_path}/data/bgworkers.db",
        "BGW_METRICS_PORT": "9251",
        "BGW_OUTBOX_RELAY_ENABLED": "false",
        **env,
    }
    if not seconds:  # declare every queue with the configured type, as the gate does
        code = (
            "import bgworkers; from bgworkers.middleware.process_hooks import first_mismatch; "
            "print(first_mismatch(bgworkers.broker))"
        )
        return subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, **environment},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    return subprocess.run(
        [str(Path(sys.executable).parent / "dramatiq"), "bgworkers", "-p", "1", "-t", "1"],
        env={**os.environ, **environment},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds,
        stdin=subprocess.DEVNULL,
    )


def test_move_queues_takes_what_is_left_in_the_old_vhost(
    node: RabbitmqNode, tmp_path: Path
) -> None:
    for vhost in ("old_classic", "new_quorum"):
        node.ctl("add_vhost", vhost)
        node.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    old_url = f"amqp://guest:guest@127.0.0.1:{NODE_PORT}/old_classic"
    new_url = f"amqp://guest:guest@127.0.0.1:{NODE_PORT}/new_quorum"
    old = ClusterRabbitmqBroker(url=old_url, confirm_delivery=True, middleware=[])
    sent = []
    try:
        for n, delay in ((1, None), (2, None), (3, 3_600_000)):
            message = dramatiq.Message(
                queue_name="email", actor_name="send_email", args=(n,), kwargs={}, options={}
            )
            sent.append(old.enqueue(message, delay=delay).message_id)
        old.channel.basic_publish("", "email.XQ", b'{"a dead": "letter"}')
        assert old.get_queue_message_counts("email") == (2, 1, 1)
    finally:
        old.close()

    result = run_command(
        "move-queues", "--from", old_url, tmp_path=tmp_path,
        BGW_BROKER_URL=new_url, BGW_QUEUE_TYPE="quorum",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "email: 2 message(s) moved" in result.stdout
    assert "email.DQ: 1 message(s) moved" in result.stdout
    assert "email.XQ: 1 message(s) moved" in result.stdout
    assert "moved 4 message(s) to the queues of BGW_BROKER_URL (quorum)" in result.stdout

    new = ClusterRabbitmqBroker(url=new_url, queue_type="quorum", middleware=[])
    again = ClusterRabbitmqBroker(url=old_url, middleware=[])
    try:
        assert new.get_queue_message_counts("email") == (2, 1, 1)
        assert again.get_queue_message_counts("email") == (0, 0, 0)
        _method, _, body = new.channel.basic_get("email.DQ", auto_ack=True)
        moved = dramatiq.Message.decode(body)
        assert moved.message_id == sent[2] and moved.options["eta"] > 0  # still delayed
    finally:
        new.close()
        again.close()
    out = subprocess.run(
        ["rabbitmqctl", "-n", node.name, "list_queues", "-p", "new_quorum", "name", "type",
         "--formatter", "json"],
        check=True, capture_output=True, text=True, env=node._env(),
    ).stdout  # fmt: skip
    assert {row["type"] for row in json.loads(out)} == {"quorum"}
