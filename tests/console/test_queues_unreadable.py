"""``bgworkers queues`` and the console's overview when RabbitMQ cannot be read: one line
saying so and a non-zero exit, never a table of zeros that reads as all well.

The management API is found on the broker's host at port 15672, whatever the broker URL's
port: here it answers (the tests' RabbitMQ) while the broker of ``BGW_BROKER_URL`` does not.
"""

from __future__ import annotations

import html
import os
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.cli_helpers import BGWORKERS, run_command
from tests.platform_helpers import free_port, wait_for

pytestmark = pytest.mark.integration


def unreachable_broker_url(rabbitmq_url: str) -> str:
    """The tests' broker URL (its vhost exists on the node the management API is asked) at a
    port where nothing listens."""
    parsed = urlparse(rabbitmq_url)
    return parsed._replace(netloc=f"{parsed.netloc.rsplit(':', 1)[0]}:{free_port()}").geturl()


@pytest.mark.parametrize("management", ["the tests' node answers", "no answer"])
def test_queues_without_a_broker_is_one_line_and_exit_3(
    rabbitmq_url: str, tmp_path: Path, management: str
) -> None:
    env = {"BGW_BROKER_URL": unreachable_broker_url(rabbitmq_url), "BGW_LOG_FORMAT": "json"}
    if management == "no answer":
        env["BGW_RABBITMQ_MANAGEMENT_URL"] = f"http://127.0.0.1:{free_port()}"
    for json_flag in ((), ("--json",)):
        result = run_command("queues", *json_flag, tmp_path=tmp_path, **env)
        assert result.returncode == 3, result
        assert result.stdout == "", result.stdout
        [line] = result.stderr.splitlines()
        assert line.startswith("bgworkers queues: queues not read: RabbitMQ does not answer at"), (
            line
        )
        assert "connection refused" in line and "Traceback" not in line


def test_the_overview_page_says_not_read_instead_of_zeros(
    rabbitmq_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "BGW_DATABASE_URL": f"sqlite:///{tmp_path}/console.db",
        "BGW_BROKER_URL": unreachable_broker_url(rabbitmq_url),
        "BGW_LOG_FORMAT": "json",
    }
    subprocess.run([BGWORKERS, "migrate"], env=env, check=True, capture_output=True)
    port = free_port()
    with (tmp_path / "console.log").open("wb") as log:
        server = subprocess.Popen(
            [BGWORKERS, "console", "--no-auth", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            page = wait_for_page(f"http://127.0.0.1:{port}/", server, tmp_path / "console.log")
        finally:
            server.terminate()
            server.wait(10)
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "Queues not read: RabbitMQ does not answer at 127.0.0.1:" in text, text
    assert "<td>urgent</td>" not in text and "<th>oldest</th>" not in text


def wait_for_page(url: str, server: subprocess.Popen[bytes], log: Path) -> httpx.Response:
    answers: list[httpx.Response] = []

    def answered() -> bool:
        assert server.poll() is None, log.read_text()
        try:
            answers.append(httpx.get(url, timeout=10))
        except httpx.TransportError:
            return False
        return True

    wait_for(answered, what="the console's overview")
    return answers[-1]


@pytest.mark.parametrize("command", [("send", "heartbeat"), ("jobs", "run", "heartbeat")])
def test_a_command_that_sends_without_a_broker_is_one_line(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    env = {
        "BGW_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/wt",
        "BGW_LOG_FORMAT": "json",
    }
    assert run_command("migrate", tmp_path=tmp_path, **env).returncode == 0
    result = run_command(*command, tmp_path=tmp_path, **env)
    assert result.returncode != 0, result
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) == 1 and "RabbitMQ does not answer at 127.0.0.1:" in lines[0], lines
