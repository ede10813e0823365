"""Run the real ``bgworkers`` command as a newcomer does, and read its one-line answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BGWORKERS = str(Path(sys.executable).parent / "bgworkers")


def run_command(
    *args: str, tmp_path: Path, timeout_s: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "BGW_DATA_DIR": str(tmp_path / "data"),
        "BGW_DATABASE_URL": f"sqlite:///{tmp_path}/data/bgworkers.db",
        **env,
    }
    return subprocess.run(
        [BGWORKERS, *args],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == code, output
    lines = [line for line in result.stderr.splitlines() if line.startswith("bgworkers:")]
    assert len(lines) == 1, output
    for part in parts:
        assert part in lines[0], output
    return lines[0]
