"""The supervisor's decisions, with small real child processes (no broker needed)."""

from __future__ import annotations

import sys
from pathlib import Path

from bgworkers.processes.runner import Child, supervise


def test_a_child_failing_on_configuration_stops_everything_without_restarts() -> None:
    broken = Child("scheduler", [sys.executable, "-c", "raise SystemExit(2)"])
    healthy = Child("worker", [sys.executable, "-c", "import time; time.sleep(120)"])
    code = supervise([healthy, broken], stop_timeout_s=30)
    assert code == 2
    assert broken.restarts == 0
    assert healthy.process is not None and healthy.process.returncode is not None


def test_a_child_that_ignores_sigterm_is_killed_and_reported(tmp_path: Path) -> None:
    ready = tmp_path / "handler-installed"
    stubborn = Child(
        "worker",
        [
            sys.executable,
            "-c",
            "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "pathlib.Path(sys.argv[1]).touch(); time.sleep(120)",
            str(ready),
        ],
    )
    # The failing child exits once the stubborn one has installed its handler (or after 60 s).
    broken = Child(
        "scheduler",
        [
            sys.executable,
            "-c",
            "import pathlib, sys, time\n"
            "deadline = time.monotonic() + 60\n"
            "while not pathlib.Path(sys.argv[1]).exists() and time.monotonic() < deadline:\n"
            "    time.sleep(0.05)\n"
            "raise SystemExit(2)",
            str(ready),
        ],
    )
    assert supervise([stubborn, broken], stop_timeout_s=1) == 1
    assert ready.exists(), "the stubborn child never installed its handler"
    assert stubborn.process is not None and stubborn.process.returncode == -9
