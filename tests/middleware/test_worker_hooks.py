"""One worker process per group serves its metrics; no extra process is started for them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from bgworkers.middleware.metrics import MessageMetrics
from bgworkers.middleware.worker_hooks import LOCK_NAME, GroupExporter, claim_exporter
from bgworkers.settings import get_settings
from bgworkers.stack.broker import build_broker, serve_group_metrics
from tests.platform_helpers import free_port, wait_for

BIN = Path(sys.executable).parent


def test_only_one_claimant_holds_the_exporter_lock_until_it_lets_go(tmp_path: Path) -> None:
    first = claim_exporter(tmp_path)
    assert first is not None
    assert claim_exporter(tmp_path) is None  # another worker process of the group
    first.close()
    again = claim_exporter(tmp_path)
    assert again is not None
    again.close()
    assert (tmp_path / LOCK_NAME).exists()


def test_a_worker_outside_dramatiqs_cli_serves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    exporter = GroupExporter(serve=serve_group_metrics)
    exporter.after_worker_boot(None, None)  # type: ignore[arg-type]  # a test's in-process Worker
    assert exporter._server is None
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_broker_asks_dramatiq_for_no_fork_process() -> None:
    broker = build_broker(get_settings(), worker_process=True)
    assert [m for m in broker.middleware if m.forks] == []
    assert any(isinstance(m, GroupExporter) for m in broker.middleware)
    assert any(isinstance(m, MessageMetrics) for m in broker.middleware)


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.integration
def test_a_two_process_group_serves_metrics_from_one_worker_process(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BGW_BROKER_URL": rabbitmq_url,
        "BGW_DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
        "BGW_METRICS_DIR": str(tmp_path / "metrics"),
        "BGW_METRICS_PORT": str(port),
        "BGW_LOG_FORMAT": "json",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run([str(BIN / "bgworkers"), "migrate"], env=env, cwd=tmp_path, check=True)
    group = subprocess.Popen(
        [str(BIN / "dramatiq"), "bgworkers", "--processes", "2", "--threads", "1"],
        env=env,
        cwd=tmp_path,
        stdout=(tmp_path / "out").open("wb"),
        stderr=subprocess.STDOUT,
    )

    def answers(path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    try:
        wait_for(lambda: answers("/healthz"), timeout_s=90, what="the group's /healthz")
        assert answers("/metrics")
        assert len(children(group.pid)) == 2  # the two worker processes, and no fork
        locks = Path(tmp_path / "metrics").glob(f"*/{LOCK_NAME}")
        assert len(list(locks)) == 1
    finally:
        group.send_signal(signal.SIGTERM)
        assert group.wait(timeout=60) == 0, (tmp_path / "out").read_text()[-2000:]
