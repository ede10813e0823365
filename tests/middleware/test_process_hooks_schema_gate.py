"""The schema check runs in a child process: its result comes back, its imports do not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHILD_CHECK = """
import sys
from bgworkers.middleware.process_hooks import _in_child

def check():
    import xml.dom.minidom  # stands for the migration tooling
    return 2

assert "xml.dom.minidom" not in sys.modules
assert _in_child(check) == 2
assert _in_child(lambda: 0) == 0
assert "xml.dom.minidom" not in sys.modules, "the check's imports leaked into the worker"
"""

MIGRATION_TOOLING_STAYS_OUT = """
import logging
import sys
logging.basicConfig(level=logging.INFO)  # as dramatiq's CLI sets up a worker process
import bgworkers
from bgworkers.middleware.process_hooks import SchemaGate
try:
    SchemaGate().after_process_boot(bgworkers.broker)
    outcome = 0
except SystemExit as stop:
    outcome = stop.code
assert "alembic" not in sys.modules, sorted(m for m in sys.modules if "alembic" in m)[:5]
print("outcome", outcome)
"""


def test_the_checks_result_comes_back_and_its_imports_stay_in_the_child() -> None:
    subprocess.run([sys.executable, "-c", CHILD_CHECK], check=True, timeout=60)


def test_the_gate_decides_in_a_child_and_alembic_never_loads_in_the_worker(tmp_path: Path) -> None:
    env = {**os.environ, "BGW_DATABASE_URL": f"sqlite:///{tmp_path}/gate.db"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)

    def gate() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", MIGRATION_TOOLING_STAYS_OUT],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    unmigrated = gate()
    assert unmigrated.returncode == 0, unmigrated.stdout + unmigrated.stderr
    assert "outcome 2" in unmigrated.stdout
    assert "bgworkers: worker not started: the database has no bgworkers schema yet" in (
        unmigrated.stderr
    )
    subprocess.run([sys.executable, "-m", "bgworkers.cli", "migrate"], env=env, check=True)
    migrated = gate()
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "outcome 0" in migrated.stdout
    assert "alembic" not in migrated.stderr  # no "setup plugin ..." chatter at every start
