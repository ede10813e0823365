"""First-day errors of the real commands: one line with the fix, an exit code, no traceback.

Each test runs ``bgworkers ...`` as a subprocess in a temporary directory (so nothing of the
repository's ``var/`` is touched) and asserts the line a newcomer reads.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.cli_helpers import BGWORKERS, assert_one_line, run_command


def test_unparseable_schedule_overrides_name_the_variable(tmp_path: Path) -> None:
    result = run_command("schedule", tmp_path=tmp_path, BGW_SCHEDULE_OVERRIDES="not json")
    assert_one_line(result, 2, "BGW_SCHEDULE_OVERRIDES", "not valid JSON")


def test_help_is_plain_text(tmp_path: Path) -> None:
    result = run_command("--help", tmp_path=tmp_path)
    assert result.returncode == 0
    assert "``" not in result.stdout and ":class:" not in result.stdout


def test_migrate_says_what_it_applied(tmp_path: Path) -> None:
    first = run_command("migrate", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "database schema migrated: applied" in first.stdout
    assert "0001_platform" in first.stdout
    second = run_command("migrate", tmp_path=tmp_path)
    assert "database schema is up to date (nothing to apply)" in second.stdout


def test_the_default_database_does_not_depend_on_the_working_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "BGW_DATABASE_URL"}
    env["BGW_DATA_DIR"] = str(data)
    for folder, command in (("one", "migrate"), ("two", "schedule")):
        result = subprocess.run(
            [BGWORKERS, command], env=env, cwd=tmp_path / folder, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert (data / "bgworkers.db").exists()
    assert not list((tmp_path / "one").iterdir()) and not list((tmp_path / "two").iterdir())
