"""Process groups and parent-death signals: no worker outlives the process that supervises it.

Why: dramatiq's CLI forks its worker processes; when the CLI's main process dies by SIGKILL
(or an OOM kill) they keep running as children of PID 1, consuming messages unsupervised with
old code, and ``bgworkers run`` would start a second set next to them. Two guards:

* every child of ``bgworkers run`` starts in a process group of its own, which the supervisor
  reaps as a whole (:func:`reap_group`) before a restart and when it stops;
* each process asks the kernel for a signal when its parent dies
  (:func:`set_parent_death_signal`, Linux ``prctl(PR_SET_PDEATHSIG)``), so an orphan stops
  by itself even when nobody is left to reap it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import time
from pathlib import Path

from bgworkers.logs.loggers import get_logger

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
