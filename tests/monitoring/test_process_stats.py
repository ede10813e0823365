"""Worker group memory and CPU from /proc: a small /proc of the test's own, and the real one."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry

from bgworkers.monitoring.process_stats import WorkerGroupProcessCollector

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def fake_stat(proc: Path, pid: int, ppid: int, *, cpu_ticks: int, rss_pages: int) -> None:
    # Fields after the command name: state ppid ... utime(14) stime(15) ... rss(24).
    fields = ["S", str(ppid)] + ["0"] * 9 + [str(cpu_ticks), "0"] + ["0"] * 8 + [str(rss_pages)]
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "stat").write_text(f"{pid} (python3 -m a b) " + " ".join(fields) + "\n")


def test_main_and_its_children_are_summed_by_role(tmp_path: Path) -> None:
    fake_stat(tmp_path, 100, 1, cpu_ticks=TICKS, rss_pages=10)
    fake_stat(tmp_path, 101, 100, cpu_ticks=2 * TICKS, rss_pages=100)
    fake_stat(tmp_path, 102, 100, cpu_ticks=3 * TICKS, rss_pages=200)
    fake_stat(tmp_path, 200, 1, cpu_ticks=9 * TICKS, rss_pages=999)  # another program
    (tmp_path / "self").mkdir()
    registry = CollectorRegistry()
    registry.register(WorkerGroupProcessCollector(main_pid=100, proc=tmp_path))
    value = registry.get_sample_value
    assert value("bgworkers_worker_group_processes", {"role": "worker"}) == 2
    assert value("bgworkers_worker_group_resident_memory_bytes", {"role": "worker"}) == 300 * PAGE
    assert value("bgworkers_worker_group_resident_memory_bytes", {"role": "main"}) == 10 * PAGE
    assert value("bgworkers_worker_group_cpu_seconds_total", {"role": "worker"}) == 5
    assert value("bgworkers_worker_group_cpu_seconds_total", {"role": "main"}) == 1


def test_reads_the_real_proc_for_this_process_as_a_child() -> None:
    registry = CollectorRegistry()
    registry.register(WorkerGroupProcessCollector(main_pid=os.getppid()))
    rss = registry.get_sample_value(
        "bgworkers_worker_group_resident_memory_bytes", {"role": "worker"}
    )
    assert rss is not None and rss > 10 * 2**20  # this pytest process, at least
