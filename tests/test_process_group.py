"""Process-group reaping and the parent-death signal, with small real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bgworkers.processes.runner import group_members, reap_group
from tests.platform_helpers import wait_for

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="Linux process table")

# A parent that starts a grandchild ignoring SIGTERM, prints its pid, then waits.
_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
print(child.pid, flush=True)
time.sleep(120)
"""


def test_reaping_a_group_stops_grandchildren_that_ignore_sigterm() -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, stubborn], stdout=subprocess.PIPE, start_new_session=True
    )
    assert parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    wait_for(lambda: len(group_members(parent.pid)) == 2, timeout_s=10, what="two members")
    assert grandchild in group_members(parent.pid)
    assert reap_group(parent.pid, name="test", term_timeout_s=0.5) == 2
    parent.wait(5)
    assert group_members(parent.pid) == []


def test_an_orphan_with_a_parent_death_signal_stops() -> None:
    orphan = (
        "import signal, time; "
        "from bgworkers.processes.runner import set_parent_death_signal; "
        "assert set_parent_death_signal(signal.SIGKILL); print('armed', flush=True); "
        "time.sleep(120)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, orphan], stdout=subprocess.PIPE, start_new_session=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == b"armed"  # the grandchild shares the pipe
    parent.kill()  # the grandchild's parent dies; nobody reaps the group
    parent.wait(5)
    wait_for(lambda: child not in group_members(parent.pid), timeout_s=10, what="orphan stop")
