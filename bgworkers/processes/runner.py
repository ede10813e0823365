"""``bgworkers run``: the worker and the scheduler under one supervisor, for a single machine.

Why a supervisor: dramatiq's CLI exits when a worker process dies, and periodiq, like any
process, may crash (it waits out a RabbitMQ outage, see
:mod:`bgworkers.scheduling.resilient_sending`). In production a process manager (see ``deploy/``)
restarts them; on a developer's machine this command does the same: it starts
``dramatiq bgworkers`` and ``periodiq bgworkers``, restarts whichever exits unexpectedly
(with a growing delay, capped), and on Ctrl-C or SIGTERM stops both gracefully, then
forcefully after a timeout. Each child runs in a process group of its own that is reaped as a
whole before a restart and at the end: when dramatiq's main process is killed, its worker
processes are stopped too, never left running beside the new set (see
:mod:`bgworkers.processes.process_group`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bgworkers.logs.loggers import get_logger
from bgworkers.processes.process_group import reap_group, set_parent_death_signal

log = get_logger(__name__)


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        # Own process group: Ctrl-C in the terminal reaches the supervisor only, which then
        # stops children in order instead of all of them dying at once; and the group is what
        # :meth:`reap` kills, grandchildren included. The parent-death signal stops the child
        # if the supervisor itself is killed.
        self.process = subprocess.Popen(
            self.argv, start_new_session=True, preexec_fn=set_parent_death_signal
        )
        self.started_at = time.monotonic()
        log.info("process_started", process=self.name, pid=self.process.pid)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def reap(self) -> int:
        """Stop whatever is left of this child's process group (its orphaned workers)."""
        if self.process is None:
            return 0
        return reap_group(self.process.pid, name=self.name)


#: Exit codes that a restart cannot fix: 2, a bad setting (bgworkers' configuration error) or
#: a module that does not import (dramatiq's code for it).
PERMANENT_EXIT_CODES = frozenset({2})
#: dramatiq's own graceful stop (finish running messages), in milliseconds; kept below the
#: supervisor's kill deadline so messages get the whole of it.
WORKER_SHUTDOWN_TIMEOUT_MS = 50_000
STOP_TIMEOUT_S = 60.0


def default_children(*, processes: int, threads: int) -> list[Child]:
    python = sys.executable
    return [
        Child(
            "worker",
            [
                python,
                "-m",
                "dramatiq",
                "bgworkers",
                "--processes",
                str(processes),
                "--threads",
                str(threads),
                "--worker-shutdown-timeout",
                str(WORKER_SHUTDOWN_TIMEOUT_MS),
            ],
        ),
        # periodiq has no ``__main__``: run its console script from this environment.
        Child("scheduler", [str(Path(python).parent / "periodiq"), "bgworkers"]),
    ]


def supervise(children: list[Child], *, stop_timeout_s: float = STOP_TIMEOUT_S) -> int:
    """Run ``children`` until a stop signal; return the exit code for the shell.

    0 after a clean stop; the child's code when it exited with a permanent error (it is not
    restarted, and the others are stopped); 1 when a child had to be killed.
    """
    stopping = False
    failed_code = 0

    def request_stop(signum: int, _: object) -> None:
        nonlocal stopping
        if not stopping:
            log.info("stop_requested", signal=signal.Signals(signum).name)
        stopping = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    for child in children:
        child.start()
    while not stopping:
        now = time.monotonic()
        for child in children:
            if child.running() or stopping:
                continue
            if child.next_start == 0.0:
                code = child.process.returncode if child.process else None
                # dramatiq's worker processes outlive a killed main process: never run a
                # second set beside them.
                child.reap()
                if code in PERMANENT_EXIT_CODES:
                    log.error(
                        "process_failed_permanently",
                        process=child.name,
                        code=code,
                        hint="a restart cannot fix this: read the lines above (configuration?)",
                    )
                    failed_code = code or 1
                    stopping = True
                    break
                # Restart quickly after a long healthy run, slower after repeated crashes.
                if now - child.started_at > 60:
                    child.restarts = 0
                delay = min(2.0 * 2**child.restarts, 60.0)
                child.restarts += 1
                child.next_start = now + delay
                log.warning("process_exited", process=child.name, code=code, restart_in_s=delay)
            elif now >= child.next_start:
                child.next_start = 0.0
                child.start()
        time.sleep(0.2)
    code = stop_all(children, timeout_s=stop_timeout_s) or failed_code
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    return code


def stop_all(children: list[Child], *, timeout_s: float) -> int:
    """SIGTERM each child, wait up to ``timeout_s`` in all, then SIGKILL; 1 if any was killed."""
    killed = False
    for child in children:
        if child.running() and child.process is not None:
            # To the child only: dramatiq forwards it to its own workers, and a second
            # SIGTERM reaching them directly would mean "kill now".
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            log.error("process_killed", process=child.name, after_s=timeout_s)
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
            killed = True
        child.reap()
        log.info("process_stopped", process=child.name, code=child.process.returncode)
    return 1 if killed else 0
