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
