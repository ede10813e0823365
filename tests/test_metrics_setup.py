"""Multiprocess metrics depend on import order: prove the order holds."""

import os
import subprocess
import sys

from bgworkers.metrics.multiproc import remove_dead_runs, run_key

CHILD_OF_DRAMATIQ = """
import builtins, multiprocessing, os, sys
seen = {}
real_import = builtins.__import__
def spy(name, *args, **kwargs):
    if name.startswith("prometheus_client") and "dir" not in seen:
        seen["dir"] = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return real_import(name, *args, **kwargs)
def child():
    builtins.__import__ = spy
    import bgworkers
    assert seen["dir"], "prometheus_client was imported before its directory was chosen"
    from prometheus_client import values
    assert "MultiProcessValue" in values.ValueClass.__qualname__, values.ValueClass
import dramatiq.cli  # the loader a worker process of dramatiq's CLI imports bgworkers with
multiprocessing.set_start_method("fork")
process = multiprocessing.Process(target=child)
process.start(); process.join()
sys.exit(process.exitcode)
"""


def test_worker_processes_choose_multiprocess_mode_before_prometheus_client_loads(
    tmp_path,
) -> None:
    env = {**os.environ, "BGW_METRICS_DIR": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run([sys.executable, "-c", CHILD_OF_DRAMATIQ], check=True, env=env, timeout=60)
    assert len(list(tmp_path.iterdir())) == 1  # one directory, for this parent's run


def test_dead_runs_are_removed_and_live_ones_kept(tmp_path) -> None:
    live = tmp_path / run_key(os.getpid())
    dead = tmp_path / "999999999-1"
    for directory in (live, dead):
        directory.mkdir()
    keep = tmp_path / "current"
    keep.mkdir()
    assert remove_dead_runs(tmp_path, keep=keep) == [dead]
    assert live.exists() and keep.exists()
