"""A real ``periodiq bgworkers`` scheduler process for the tests, on a clock of its own
(``BGW_SCHEDULER_CLOCK_OFFSET_S``) and with only the catch-up job and the given probe jobs of
:mod:`tests.scheduling.probe_jobs` on its schedule."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bgworkers.scheduling.catch_up import CATCH_UP_JOB
from bgworkers.scheduling.schedule import SCHEDULE

ROOT = Path(__file__).resolve().parents[2]
PERIODIQ = Path(sys.executable).parent / "periodiq"
ONLY_CATCH_UP = {e.actor_name: "off" for e in SCHEDULE if e.actor_name != CATCH_UP_JOB}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def offset_to(virtual: datetime) -> int:
    """Clock offset (whole seconds) that makes the scheduler's now equal ``virtual`` now.

    A scheduler started with it reaches its first tick however long it takes to start: each
    test leaves a start minutes of slack on the scheduler's clock, or checks which tick came.
    """
    return round(virtual.timestamp() - time.time())


class Scheduler:
    """One ``periodiq bgworkers`` process; its log lines are kept in a file."""

    def __init__(self, tmp: Path, name: str, *, url: str, offset_s: int, probes: list[str]):
        self.log = tmp / f"{name}.log"
        self.env = {
            **os.environ,
            "TZ": "Asia/Kolkata",
            "BGW_BROKER_URL": url,
            "BGW_SCHEDULE_OVERRIDES": json.dumps(ONLY_CATCH_UP),
            "BGW_SCHEDULER_CLOCK_OFFSET_S": str(offset_s),
            "BGW_TEST_PROBES": ",".join(probes),
            "BGW_LOG_FORMAT": "json",
            "BGW_METRICS_DIR": str(tmp / f"{name}-metrics"),
            "BGW_DATABASE_URL": f"sqlite:///{tmp}/{name}-unused.db",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Scheduler:
        """Starts the process; periodiq itself waits up to 4 s more when its real clock is past
        second 55 (its start-up padding), which the tests' clocks leave room for."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(PERIODIQ), "bgworkers", "tests.scheduling.probe_jobs"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def sends(self, job: str) -> int:
        """How many messages this process has sent for ``job`` (periodiq logs each one)."""
        if not self.log.exists():
            return 0
        text = self.log.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if f"Scheduling Actor({job}) at" in line)

    def check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-15:]
            raise AssertionError(
                f"scheduler exited with code {self.process.returncode}:\n" + "\n".join(tail)
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
