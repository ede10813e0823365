"""What ``import bgworkers`` loads: the libraries of one domain stay out until it runs."""

from __future__ import annotations

import subprocess
import sys

LOADED = """
import sys
import bgworkers
print(" ".join(sorted(m for m in ("httpx", "tenacity", "croniter", "alembic", "jinja2",
    "starlette", "uvicorn", "aiosmtpd") if m in sys.modules)))
"""


def test_import_leaves_out_the_http_cron_and_migration_libraries() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOADED], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


def test_the_lazily_imported_actors_still_find_their_libraries() -> None:
    from bgworkers.reminders.recurrence import parse_rule
    from bgworkers.sync import actors

    assert parse_rule("cron:0 9 * * 1-5") is not None
    assert actors.sync_user_calendar.fn.__name__ == "sync_user_calendar"
