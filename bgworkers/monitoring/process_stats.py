"""Memory and CPU of a worker group's processes, exported by the group's metrics process.

Why here: multiprocess files carry no process metrics, and the metrics process, a child of the
dramatiq CLI, can read its parent and siblings from ``/proc`` (Linux) at each scrape at no cost
to the other workers. The ``role`` label: docs/metrics.md, "Worker group processes".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PROC = Path("/proc")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class ProcessSample:
    pid: int
    ppid: int
    cpu_s: float
    rss_bytes: int


def read_process(pid: int, proc: Path = PROC) -> ProcessSample | None:
    """One process's parent, CPU (user + system, seconds) and resident memory; None if gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    ppid, utime, stime, rss_pages = (int(fields[i]) for i in (1, 11, 12, 21))
    return ProcessSample(pid, ppid, (utime + stime) / _TICKS_PER_S, rss_pages * _PAGE_BYTES)


def group_samples(main_pid: int, proc: Path = PROC) -> dict[str, list[ProcessSample]]:
    """The main process and its children (the worker processes), by role."""
    main = read_process(main_pid, proc)
    samples = (read_process(int(e.name), proc) for e in proc.iterdir() if e.name.isdigit())
    return {
        "main": [main] if main is not None else [],
        "worker": [s for s in samples if s is not None and s.ppid == main_pid],
    }


class WorkerGroupProcessCollector(Collector):
    """``bgworkers_worker_group_*``: read at each scrape (a few small /proc files)."""

    def __init__(self, main_pid: int | None = None, proc: Path = PROC) -> None:
        self._main_pid = main_pid if main_pid is not None else os.getppid()
        self._proc = proc

    def collect(self) -> Iterator[Metric]:
        roles = group_samples(self._main_pid, self._proc)
        memory = GaugeMetricFamily(
            "bgworkers_worker_group_resident_memory_bytes",
            "Resident memory of the worker group's processes, in bytes, by role.",
            labels=["role"],
        )
        cpu = CounterMetricFamily(
            "bgworkers_worker_group_cpu_seconds",
            "CPU time (user and system) of the worker group's live processes, in seconds.",
            labels=["role"],
        )
        count = GaugeMetricFamily(
            "bgworkers_worker_group_processes",
            "Live processes of the worker group, by role.",
            labels=["role"],
        )
        for role, samples in roles.items():
            memory.add_metric([role], sum(s.rss_bytes for s in samples))
            cpu.add_metric([role], sum(s.cpu_s for s in samples))
            count.add_metric([role], len(samples))
        yield from (memory, cpu, count)
