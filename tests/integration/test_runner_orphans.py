"""``bgworkers run`` after dramatiq's main process is SIGKILLed: its worker processes do not
live on as orphans, neither beside the restarted set nor after the runner has stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bgworkers.processes.runner import group_members
from tests.platform_helpers import free_port, wait_for

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def dramatiq_main(runner: int) -> int | None:
    for pid in children_of(runner):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"dramatiq" in argv:
            return pid
    return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_sigkill_of_dramatiq_leaves_no_process_of_its_group(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    env = {
        **os.environ,
        "BGW_BROKER_URL": rabbitmq_url,
        "BGW_DATA_DIR": str(tmp_path),
        "BGW_DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
        "BGW_METRICS_PORT": str(free_port()),
        "BGW_SCHEDULER_METRICS_PORT": str(free_port()),
    }
    runner = subprocess.Popen(
        [str(BIN / "bgworkers"), "run", "--processes", "2", "--threads", "1"],
        env=env,
        cwd=tmp_path,
        stdout=(tmp_path / "run.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    groups: list[int] = []
    try:
        wait_for(lambda: dramatiq_main(runner.pid) is not None, timeout_s=60, what="dramatiq")
        first = dramatiq_main(runner.pid)
        assert first is not None
        groups.append(first)  # started in a session of its own: its pid is its group id
        wait_for(lambda: len(children_of(first)) >= 2, timeout_s=60, what="worker processes")
        old_workers = children_of(first)
        os.kill(first, signal.SIGKILL)

        def restarted() -> bool:
            pid = dramatiq_main(runner.pid)
            return pid is not None and pid != first

        wait_for(restarted, timeout_s=60, what="a restarted dramatiq")
        # The runner reaps the old group before it starts the new set.
        assert group_members(first) == [], old_workers
        second = dramatiq_main(runner.pid)
        assert second is not None
        groups.append(second)
        wait_for(lambda: len(children_of(second)) >= 2, timeout_s=60, what="new workers")
    finally:
        runner.send_signal(signal.SIGINT)
        runner.wait(timeout=120)
    for group in groups:
        assert group_members(group) == [], group
