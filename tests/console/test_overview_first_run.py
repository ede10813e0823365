"""The overview's job health: a job that has never run waits for its first run, not overdue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

import bgworkers
from bgworkers.console.operations import Console
from bgworkers.console.overview import read_overview
from bgworkers.settings import load_settings
from tests.scheduling.recorded_runs import record_run

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_a_fresh_system_waits_for_first_runs_and_a_failing_job_is_overdue(
    sqlite_engine: Engine,
) -> None:
    record_run("heartbeat", NOW - timedelta(hours=1), "failed")
    console = Console(
        settings=load_settings(), broker=bgworkers.broker, engine=sqlite_engine, who="test"
    )
    view = read_overview(console, read_queues=list, now=NOW)
    assert view.database_error is None
    rows = {row.job.name: row for row in view.jobs}
    never_ran = rows["backup_user_data"]
    assert (never_ran.waiting, never_ran.overdue) == (True, False)
    ran_and_failed = rows["heartbeat"]
    assert (ran_and_failed.waiting, ran_and_failed.overdue) == (False, True)
