"""``make bench`` never touches the application's queues, and prints figures, not logs.

The test's own vhost (``BGW_BROKER_URL``) plays the application's broker: its ``email`` and
``maintenance`` queues and their dead letters are filled first, every benchmark script runs
(small sizes) as ``make bench`` runs it, and every message must still be there afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pika
import pytest
from dramatiq.common import xq_name

from bgworkers import queues
from bgworkers.settings import get_settings
from bgworkers.stack.broker import build_broker

pytestmark = pytest.mark.integration
BENCH = Path(__file__).resolve().parents[2] / "bench"
#: Small sizes for each script; a new benchmark must be added here (checked below).
BENCH_ARGS = {
    "cleanup_temp_files.py": ["--files", "200", "--dirs", "4"],
    "email_outbox.py": ["--emails", "40", "--threads", "2"],
    "fairness.py": [
        "--bulk",
        "40",
        "--reminders",
        "5",
        "--ordinary",
        "10",
        "--heavy",
        "2",
        "--heavy-pages",
        "3",
        "--page-latency-ms",
        "5",
        "--slice-s",
        "0.5",
        "--connections",
        "10",
        "--latency-ms",
        "5",
    ],
    "fanout.py": ["2000", "200"],
    "message_throughput.py": ["200"],
    "redaction.py": ["--repeat", "1"],
    "reminder_pages.py": ["--reminders", "100", "--rounds", "1"],
    "scale.py": ["--users", "40", "--ceiling-count", "50", "--timeout-s", "120"],
    "scheduling_matcher.py": ["--calls", "50"],
    "stack_overhead.py": ["--messages", "300", "--reps", "1", "--latency-messages", "50"],
    "sync_calendar.py": ["--events", "500", "--changed", "50"],
    "tracing_overhead.py": ["--messages", "500", "--repeat", "1"],
}
APP_QUEUES = [q for name in (queues.EMAIL, queues.MAINTENANCE) for q in (name, xq_name(name))]
PER_QUEUE = 3


def depth(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> int:
    count: int = channel.queue_declare(queue, passive=True).method.message_count
    return count


@contextmanager
def amqp_channel(url: str) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    """A channel on a fresh connection, closed on leaving.

    The benchmarks run for minutes while nothing drives a held connection's I/O loop, so it
    sends no heartbeats and RabbitMQ drops it (two missed heartbeats); each step therefore
    connects anew.
    """
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture
def filled_app_queues(rabbitmq_url: str) -> Iterator[str]:
    broker = build_broker(get_settings())
    for name in (queues.EMAIL, queues.MAINTENANCE):
        broker.declare_queue(name, ensure=True)  # with dramatiq's arguments, as the app has
    broker.close()
    with amqp_channel(rabbitmq_url) as channel:
        for queue in APP_QUEUES:
            channel.queue_purge(queue)
            for n in range(PER_QUEUE):
                channel.basic_publish("", queue, f"application message {n}".encode())
    yield rabbitmq_url
    with amqp_channel(rabbitmq_url) as channel:
        for queue in APP_QUEUES:
            channel.queue_purge(queue)


def test_every_benchmark_leaves_the_application_queues_alone(
    filled_app_queues: str, tmp_path: Path
) -> None:
    scripts = {p.name for p in BENCH.glob("[!_]*.py")}
    assert scripts == set(BENCH_ARGS), "give each benchmark small arguments in BENCH_ARGS"
    own_queues: list[str] = []
    for script, args in sorted(BENCH_ARGS.items()):
        result = subprocess.run(
            [sys.executable, str(BENCH / script), *args],
            env={**os.environ, "BGW_DATA_DIR": str(tmp_path)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert not [line for line in lines if line.startswith("{")], result.stdout  # no JSON logs
        # A screenful of figures: scale.py prints a block per phase (about 60 lines at these
        # sizes); a log stream leaking to stdout would be hundreds.
        assert len(lines) < 100, result.stdout
        own_queues += re.findall(r"^bench_queue=(\S+)", result.stdout, re.MULTILINE)
    with amqp_channel(filled_app_queues) as channel:
        assert {queue: depth(channel, queue) for queue in APP_QUEUES} == dict.fromkeys(
            APP_QUEUES, PER_QUEUE
        )
    # email_outbox, fanout and message_throughput used queues of their own
    assert len(own_queues) == 3
    for queue in own_queues:
        with (
            amqp_channel(filled_app_queues) as channel,
            pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone,
        ):
            channel.queue_declare(queue, passive=True)
        assert gone.value.reply_code == 404
