"""The supervisor's decisions, with small real child processes (no broker needed)."""

from __future__ import annotations

import sys

from bgworkers.processes.runner import Child, supervise


def test_a_child_failing_on_configuration_stops_everything_without_restarts() -> None:
    broken = Child("scheduler", [sys.executable, "-c", "raise SystemExit(2)"])
    healthy = Child("worker", [sys.executable, "-c", "import time; time.sleep(120)"])
    code = supervise([healthy, broken], stop_timeout_s=30)
    assert code == 2
    assert broken.restarts == 0
    assert healthy.process is not None and healthy.process.returncode is not None


def test_a_child_that_ignores_sigterm_is_killed_and_reported() -> None:
    stubborn = Child(
        "worker",
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)",
        ],
    )
    # The failing child waits so the stubborn one has installed its handler by then.
    broken = Child(
        "scheduler", [sys.executable, "-c", "import time; time.sleep(2); raise SystemExit(2)"]
    )
    assert supervise([stubborn, broken], stop_timeout_s=1) == 1
    assert stubborn.process is not None and stubborn.process.returncode == -9
