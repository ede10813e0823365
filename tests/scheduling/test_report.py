"""``bgworkers schedule`` output, and the per-entry override setting."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine

from bgworkers.errors import ConfigurationError
from bgworkers.scheduling.report import print_schedule
from bgworkers.scheduling.schedule import check_overrides
from bgworkers.settings import load_settings
from tests.scheduling.recorded_runs import record_run

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)  # a Wednesday


def test_report_lists_every_job_with_cron_zone_next_and_last_run(db_engine: Engine) -> None:
    record_run("cleanup_temp_files", datetime(2026, 11, 25, 1, 0, tzinfo=UTC), "succeeded", 1.25)
    record_run("sync_notion_pages", datetime(2026, 11, 25, 8, 0, tzinfo=UTC), "failed", 0.5)
    settings = load_settings(
        timezone="Europe/Paris",
        schedule_overrides={"sync_notion_pages": "0 */4 * * *", "optimize_database": "off"},
    )
    out = io.StringIO()
    print_schedule(settings, out, now=NOW)
    lines = {line.split()[0]: line for line in out.getvalue().splitlines()}
    assert lines["job"].split()[:3] == ["job", "cron", "zone"]
    cleanup = lines["cleanup_temp_files"]
    assert "0 2 * * *" in cleanup and "Europe/Paris" in cleanup
    assert "2026-11-26 02:00 CET" in cleanup  # next run, in the operator's zone
    assert "2026-11-25 02:00 CET" in cleanup and "succeeded" in cleanup and "1.250" in cleanup
    notion = lines["sync_notion_pages"]
    assert "0 */4 * * * (override)" in notion and "2026-11-25 12:00 CET" in notion
    assert "failed" in notion
    assert "off (0 3 * * 7)" in lines["optimize_database"]
    assert "disabled" in lines["optimize_database"]
    assert "never" in lines["backup_user_data"]
    assert "waiting for its first run" in lines["backup_user_data"]
    assert "2026-11-29 01:00 CET" in lines["backup_user_data"]  # Sunday, written 7


def test_overrides_are_checked_at_start() -> None:
    with pytest.raises(ConfigurationError, match=r"BGW_SCHEDULE_OVERRIDES.*'nope' is not in"):
        check_overrides(load_settings(schedule_overrides={"nope": "off"}).schedule_overrides)
    with pytest.raises(
        ConfigurationError, match=r"BGW_SCHEDULE_OVERRIDES.*heartbeat.*out of range"
    ):
        check_overrides({"heartbeat": "99 * * * *"})


def test_overrides_are_read_as_json_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(
        "BGW_SCHEDULE_OVERRIDES", '{"heartbeat": "*/2 * * * *", "backup_user_data": "OFF"}'
    )
    settings = load_settings()
    assert settings.schedule_overrides == {"heartbeat": "*/2 * * * *", "backup_user_data": "OFF"}
