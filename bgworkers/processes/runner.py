"""``bgworkers run``: the worker and the scheduler under one supervisor, for a single machine,
and the guards that keep any worker from outliving the process that supervises it.

Why a supervisor: dramatiq's CLI exits when a worker process dies, and periodiq, like any
process, may crash (it waits out a RabbitMQ outage, see
:mod:`bgworkers.scheduling.resilient_sending`). In production a process manager (see ``deploy/``)
restarts them; on a developer's machine this command does the same: it starts
``dramatiq bgworkers`` and ``periodiq bgworkers``, restarts whichever exits unexpectedly
(with a growing delay, capped), and on Ctrl-C or SIGTERM stops both gracefully, then
forcefully after a timeout.

Why the guards: dramatiq's CLI forks its worker processes; when its main process dies by
SIGKILL (or an OOM kill) they keep running as children of PID 1, consuming messages
unsupervised with old code, beside the set a restart starts. So every child of
``bgworkers run`` starts in a process group of its own, which the supervisor reaps as a whole
(:func:`reap_group`) before a restart and when it stops; and each process asks the kernel for
a signal when its parent dies (:func:`set_parent_death_signal`, Linux
``prctl(PR_SET_PDEATHSIG)``), so an orphan stops by itself even when nobody is left to reap it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bgworkers.logs.loggers import get_logger
from bgworkers.processes.diagnosis import EXIT_CONFIGURATION

log = get_logger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PROC = Path("/proc")


def set_parent_death_signal(signum: int = signal.SIGTERM) -> bool:
    """Have the kernel send ``signum`` to this process when its parent exits (Linux only).

    Returns False where unsupported. If the parent died while the call was made (this
    process was reparented meanwhile), the signal is sent to ourselves at once. (A parent that
    is PID 1 is legitimate: a container's entry point, or systemd.)
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)
    return True


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    if not _PROC.is_dir():  # not Linux: the kernel's answer, zombies included
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # Fields after "(comm)": state ppid pgrp ...; comm itself may hold spaces or ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def reap_group(pgid: int, *, name: str, term_timeout_s: float = 5.0) -> int:
    """SIGTERM what is left of group ``pgid``, SIGKILL it after ``term_timeout_s``.

    Returns how many processes were still running when the reaping began (0: nothing to do).
    """
    left = group_members(pgid)
    if not left:
        return 0
    log.warning("process_group_reaped", process=name, pgid=pgid, remaining=len(left))
    for signum, wait_s in ((signal.SIGTERM, term_timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            return len(left)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not group_members(pgid):
                return len(left)
            time.sleep(0.1)
    return len(left)


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0

    def start(self) -> None:
        # Own process group (see the module): Ctrl-C in the terminal reaches the supervisor
        # only, which then stops children in order instead of all of them dying at once.
        self.process = subprocess.Popen(
            self.argv, start_new_session=True, preexec_fn=set_parent_death_signal
        )
        self.started_at = time.monotonic()
        log.info("process_started", process=self.name, pid=self.process.pid)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def reap(self) -> None:
        """Stop whatever is left of this child's process group (its orphaned workers)."""
        if self.process is not None:
            reap_group(self.process.pid, name=self.name)


#: dramatiq's own graceful stop (finish running messages), in milliseconds; kept below the
#: supervisor's kill deadline so messages get the whole of it.
WORKER_SHUTDOWN_TIMEOUT_MS = 50_000


def default_children(*, processes: int, threads: int) -> list[Child]:
    python = sys.executable
    sizes = ["--processes", str(processes), "--threads", str(threads)]
    stop = ["--worker-shutdown-timeout", str(WORKER_SHUTDOWN_TIMEOUT_MS)]
    return [
        Child("worker", [python, "-m", "dramatiq", "bgworkers", *sizes, *stop]),
        # periodiq has no ``__main__``: run its console script from this environment.
        Child("scheduler", [str(Path(python).parent / "periodiq"), "bgworkers"]),
    ]


def supervise(children: list[Child], *, stop_timeout_s: float = 60.0) -> int:
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
                # A bad setting (bgworkers' configuration error) or a module that does not
                # import (dramatiq's code for it): a restart cannot fix it.
                if code == EXIT_CONFIGURATION:
                    log.error(
                        "process_failed_permanently",
                        process=child.name,
                        code=code,
                        hint="a restart cannot fix this: read the lines above (configuration?)",
                    )
                    failed_code = EXIT_CONFIGURATION
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
