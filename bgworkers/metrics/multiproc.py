"""Choose prometheus_client's multiprocess directory before prometheus_client is imported.

Why this exists: ``dramatiq --processes N`` runs N worker processes, and Prometheus must see
one sum. prometheus_client's multiprocess mode keeps each process's values in files under
``PROMETHEUS_MULTIPROC_DIR``, but it reads that variable once, when prometheus_client is first
imported. So the CLI's wiring (:mod:`bgworkers.brokers.wiring`) calls
:func:`prepare_multiprocess_dir` before anything imports it.

The directory is keyed by the dramatiq CLI's main process (pid and start time), which is the
parent of every worker process and of the exposition process: processes of one CLI share it,
two CLIs on one host never mix their files, and a restarted CLI starts from empty counters
instead of reading a dead run's files. Processes that are not dramatiq CLI children (the
scheduler, the admin command, tests) keep prometheus_client's ordinary in-memory values.

This module must not import prometheus_client.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"


def run_key(pid: int) -> str:
    """``<pid>-<start time in clock ticks>`` (Linux), so a reused pid is not mistaken."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return f"{pid}-0"
    # Field 22; the command name (field 2) may hold spaces, so split after its ')'.
    return f"{pid}-{stat.rsplit(')', 1)[1].split()[19]}"


_cli_child = False


def is_dramatiq_cli_child() -> bool:
    """True in the worker processes that ``dramatiq bgworkers`` starts (see below)."""
    return _cli_child


def prepare_multiprocess_dir(base: Path) -> Path | None:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` for dramatiq CLI children; return the directory in use.

    Called only where a CLI loads bgworkers (:mod:`bgworkers.brokers.wiring`): dramatiq's worker
    processes are forked children of its main process; periodiq's scheduler is a main process
    and keeps in-memory values.
    """
    global _cli_child
    _cli_child = multiprocessing.parent_process() is not None
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    if not _cli_child:
        return None
    directory = base.resolve() / run_key(os.getppid())
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[ENV_VAR] = str(directory)
    return directory


def remove_dead_runs(base: Path, keep: Path) -> list[Path]:
    """Delete directories of CLI runs whose main process is gone; return what was removed."""
    removed: list[Path] = []
    if not base.is_dir():
        return removed
    for child in base.iterdir():
        if child.resolve() == keep.resolve() or not child.is_dir():
            continue
        pid_text = child.name.split("-", 1)[0]
        if pid_text.isdigit() and run_key(int(pid_text)) == child.name:
            continue  # that run is still alive
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child)
    return removed
