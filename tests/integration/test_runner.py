"""``bgworkers run``: both processes up, a crashed one restarted, Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.platform_helpers import free_port, wait_for

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def wait_for_event(path: Path, predicate, timeout_s: float = 60) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The first event of ``path`` that ``predicate`` accepts, once one is there."""
    found: list[dict[str, object]] = []

    def seen() -> bool:
        found[:] = [event for event in events(path) if predicate(event)][:1]
        return bool(found)

    wait_for(seen, timeout_s=timeout_s, what=f"a matching event in {path.name}")
    return found[0]


def test_run_supervises_worker_and_scheduler(tmp_path: Path, rabbitmq_url: str) -> None:
    env = {
        **os.environ,
        "BGW_BROKER_URL": rabbitmq_url,
        "BGW_DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
        "BGW_METRICS_DIR": str(tmp_path / "metrics"),
        "BGW_METRICS_PORT": str(free_port()),
    }
    out = tmp_path / "run.out"
    runner = subprocess.Popen(
        [str(BIN / "bgworkers"), "run", "--processes", "1", "--threads", "1"],
        env=env,
        cwd=tmp_path,
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        started = {
            name: wait_for_event(
                out, lambda e, n=name: e["event"] == "process_started" and e["process"] == n
            )
            for name in ("worker", "scheduler")
        }
        wait_for_event(
            out, lambda e: e["event"] == "message_processed" and e["actor"] == "heartbeat"
        )
        os.kill(int(started["scheduler"]["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        wait_for_event(
            out, lambda e: e["event"] == "process_exited" and e["process"] == "scheduler"
        )
        restarted = wait_for_event(
            out,
            lambda e: (
                e["event"] == "process_started"
                and e["process"] == "scheduler"
                and e["pid"] != started["scheduler"]["pid"]
            ),
        )
        assert restarted["pid"] != started["scheduler"]["pid"]
    finally:
        runner.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = runner.wait(timeout=90)
    assert code == 0
    stopped = {e["process"] for e in events(out) if e["event"] == "process_stopped"}
    assert stopped == {"worker", "scheduler"}
    for event in events(out):
        if event["event"] == "process_started":
            with pytest.raises(ProcessLookupError):
                os.kill(int(event["pid"]), 0)  # type: ignore[call-overload]
