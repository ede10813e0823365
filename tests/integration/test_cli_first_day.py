"""The real commands against the real RabbitMQ, as a newcomer runs them (issue: first day).

Each runs ``bgworkers ...`` as a subprocess in a temporary directory with its own SQLite
database, and asserts what a person reads: the reasons, the exit code, no traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pika
import pytest
from dramatiq.common import xq_name
from sqlmodel import Session

from bgworkers import queues
from bgworkers.broker import build_broker
from bgworkers.db import make_engine, utcnow
from bgworkers.maintenance.heartbeat import record_heartbeat
from bgworkers.settings import get_settings
from tests.cli_helpers import run_command
from tests.platform_helpers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def one_dead_letter(rabbitmq_url: str) -> Iterator[None]:
    broker = build_broker(get_settings())
    broker.declare_queue(queues.EMAIL, ensure=True)
    broker.close()
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    channel = connection.channel()
    for queue in queues.ALL:
        for name in (queue, xq_name(queue)):
            try:
                channel.queue_purge(name)
            except pika.exceptions.ChannelClosedByBroker:  # not declared in this vhost yet
                channel = connection.channel()
    channel.basic_publish("", xq_name(queues.EMAIL), b'{"dead": "letter"}')
    yield
    connection.channel().queue_purge(xq_name(queues.EMAIL))
    connection.close()


def test_health_says_why_it_is_not_healthy(one_dead_letter: None, tmp_path: Path) -> None:
    assert run_command("migrate", tmp_path=tmp_path).returncode == 0
    engine = make_engine(f"sqlite:///{tmp_path}/data/bgworkers.db")
    with Session(engine) as session:
        now = utcnow()
        record_heartbeat(session=session, now=now, scheduled_at=now - timedelta(seconds=5))
        session.commit()
    engine.dispose()
    result = run_command("health", tmp_path=tmp_path)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    verdict = result.stdout.split("NOT healthy", 1)[1].splitlines()
    assert verdict[0] == " (1 failing check):", result.stdout
    assert verdict[1].startswith("  - queue email: 1 dead-lettered message(s) in email.XQ")


def test_dramatiq_watch_reloads_are_available(rabbitmq_url: str, tmp_path: Path) -> None:
    """``dramatiq bgworkers --watch DIR`` needs dramatiq's ``watch`` extra (a dev dependency)."""
    dramatiq_cli = str(Path(sys.executable).parent / "dramatiq")
    process = subprocess.Popen(
        [dramatiq_cli, "bgworkers", "--processes", "1", "--threads", "1", "--watch", str(tmp_path)],
        env={**os.environ, "BGW_DATA_DIR": str(tmp_path), "BGW_METRICS_PORT": str(free_port())},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(4)
        alive = process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert alive, output
    assert "extra 'watch'" not in output
