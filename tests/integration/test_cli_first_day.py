"""The real commands against the real RabbitMQ, as a newcomer runs them (issue: first day).

Each runs ``bgworkers ...`` as a subprocess in a temporary directory with its own SQLite
database, and asserts what a person reads: the reasons, the exit code, no traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pika
import pytest
from dramatiq.common import xq_name
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers import queues
from bgworkers.db.engine import make_engine, utcnow
from bgworkers.maintenance.heartbeat import record_heartbeat
from bgworkers.settings import get_settings
from bgworkers.stack.broker import build_broker
from tests.cli_helpers import assert_one_line, run_command
from tests.platform_helpers import free_port, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def one_dead_letter(rabbitmq_url: str) -> Iterator[None]:
    broker = build_broker(get_settings())
    broker.declare_queue(queues.EMAIL, ensure=True)
    broker.close()
    parameters = pika.URLParameters(rabbitmq_url)
    parameters.heartbeat = 0  # held idle while the test runs commands (see test_poison)
    connection = pika.BlockingConnection(parameters)
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
    assert run_command("migrate", tmp_path=tmp_path).returncode == 0  # workers need the schema
    data = str(tmp_path / "data")
    log = tmp_path / "dramatiq.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [dramatiq_cli, "bgworkers", "--processes", "1", "--threads", "1", "--watch", data],
            env={**os.environ, "BGW_DATA_DIR": data, "BGW_METRICS_PORT": str(free_port())},
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # dramatiq checks the watch extra before it starts a worker process: a ready worker
        # means the check passed (an exit means it did not, or something else failed).
        wait_for(
            lambda: process.poll() is not None or "is ready for action" in log.read_text(),
            timeout_s=120,
            what="a worker ready, or the command's exit",
        )
        alive = process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    output = log.read_text(errors="replace")
    assert alive, output
    assert "extra 'watch'" not in output


def test_run_with_a_wrong_password_says_so(rabbitmq_url: str, tmp_path: Path) -> None:
    params = pika.URLParameters(rabbitmq_url)
    url = f"amqp://{params.credentials.username}:not-the-password@{params.host}:{params.port}/"
    result = run_command("run", tmp_path=tmp_path, BGW_BROKER_URL=url)
    line = assert_one_line(result, 2, "refused the user name or password", "BGW_BROKER_URL")
    assert "not-the-password" not in line


def test_run_with_a_missing_vhost_says_how_to_create_it(rabbitmq_url: str, tmp_path: Path) -> None:
    params = pika.URLParameters(rabbitmq_url)
    credentials = f"{params.credentials.username}:{params.credentials.password}"
    url = f"amqp://{credentials}@{params.host}:{params.port}/bgw_no_such_vhost"
    result = run_command("run", tmp_path=tmp_path, BGW_BROKER_URL=url)
    assert_one_line(result, 2, "has no vhost 'bgw_no_such_vhost'", "rabbitmqctl add_vhost")


def test_schedule_on_a_missing_postgresql_database(postgres_engine: Engine, tmp_path: Path) -> None:
    # postgres_engine: the real server answers (or the test skips; fails under CI).
    server = postgres_engine.url.render_as_string(hide_password=False).rsplit("/", 1)[0]
    url = f"{server}/bgw_no_such_database"
    result = run_command("schedule", tmp_path=tmp_path, BGW_DATABASE_URL=url)
    assert_one_line(result, 2, "does not exist", "createdb")
