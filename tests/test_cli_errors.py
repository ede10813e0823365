"""First-day errors of the real commands: one line with the fix, an exit code, no traceback.

Each test runs ``bgworkers ...`` as a subprocess in a temporary directory (so nothing of the
repository's ``var/`` is touched) and asserts the line a newcomer reads.
"""

from __future__ import annotations

from pathlib import Path

from tests.cli_helpers import assert_one_line, run_command


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
