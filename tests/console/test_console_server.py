"""``bgworkers console`` as an operator starts it: refused without credentials, served with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bgworkers.cli.admin import main
from tests.platform_helpers import free_port, wait_for

BGWORKERS = Path(sys.executable).parent / "bgworkers"


def test_it_refuses_to_start_without_credentials_or_with_no_auth_off_loopback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["console"]) == 2
    assert "the console needs credentials" in capsys.readouterr().err
    assert main(["console", "--no-auth", "--host", "0.0.0.0"]) == 2
    assert "only allowed on a loopback address" in capsys.readouterr().err


def test_the_command_serves_the_pages_with_its_security_headers(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BGW_DATABASE_URL": f"sqlite:///{tmp_path}/console.db",
        "BGW_CONSOLE_TOKEN": "a-long-test-token",
        "BGW_RABBITMQ_MANAGEMENT_URL": "off",
        "BGW_LOG_FORMAT": "json",
    }
    subprocess.run([str(BGWORKERS), "migrate"], env=env, check=True, capture_output=True)
    port = free_port()
    log = (tmp_path / "console.log").open("wb")
    server = subprocess.Popen(
        [str(BGWORKERS), "console", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    try:

        def answers() -> bool:
            try:
                httpx.get(f"http://127.0.0.1:{port}/login", timeout=1)
                return True
            except httpx.TransportError:
                assert server.poll() is None, (tmp_path / "console.log").read_text()
                return False

        wait_for(answers, what="the console to listen")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/").headers["location"] == "/login"
            page = client.get("/login")
            assert page.status_code == 200 and 'name="token"' in page.text
            assert "a-long-test-token" not in page.text
            assert page.headers["x-frame-options"] == "DENY"
            assert "samesite=strict" in page.headers["set-cookie"].lower()
            assert client.post("/login", data={"token": "a-long-test-token"}).status_code == 403
    finally:
        server.terminate()
        server.wait(10)
        log.close()
