"""bgworkers' processes as an operator runs them (worker group, scheduler), started by a
test with the environment it gives them, stopped as a supervisor would stop them."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.platform_helpers import free_port


def process_env(
    tmp_path: Path, *, broker_url: str, database_url: str, **more: str
) -> dict[str, str]:
    """This process's environment with bgworkers' files in ``tmp_path``, free ports for every
    endpoint, UTC, and ``more`` (``BGW_...`` settings) on top."""
    env = {
        **os.environ,
        "BGW_BROKER_URL": broker_url,
        "BGW_DATABASE_URL": database_url,
        "BGW_DATA_DIR": str(tmp_path),
        "BGW_METRICS_DIR": str(tmp_path / "metrics"),
        "BGW_METRICS_PORT": str(free_port()),
        "BGW_SCHEDULER_METRICS_PORT": str(free_port()),
        "BGW_RELAY_METRICS_PORT": str(free_port()),
        "TZ": "UTC",
        **more,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each group makes its own
    return env


class Processes:
    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        out = self.workdir / f"{name}.out"
        proc = subprocess.Popen(
            argv,
            env=self.env,
            cwd=self.workdir,
            stdout=out.open("wb"),
            stderr=(self.workdir / f"{name}.err").open("wb"),
            start_new_session=True,
        )
        self.started.append((proc, out))
        return proc

    def stop_all(self) -> list[int]:
        for proc, _ in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # as a supervisor would: the main process only
        codes = []
        for proc, _ in self.started:
            try:
                codes.append(proc.wait(timeout=60))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                codes.append(proc.wait())
        return codes


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint; empty while it does not answer yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class Stack:
    """Processes a test starts by name (worker groups, schedulers, Prometheus), each writing
    its output to ``<workdir>/<name>.out``; :meth:`stop` ends them as a supervisor would, last
    started first, and kills one that is still there after 60 s."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=self.workdir,
            stdout=(self.workdir / f"{name}.out").open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.processes.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
