"""The overview's job health: a job that has never run waits for its first run, not overdue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

import bgworkers
from bgworkers.console.operations import Console
from bgworkers.console.overview import read_overview
from bgworkers.db.engine import session_scope
from bgworkers.scheduling.claims import claim_run, finish_run
from bgworkers.settings import load_settings

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def failed_run(job: str, tick: datetime) -> None:
    with session_scope() as session:
        claim_run(
            session=session,
            job=job,
            tick=tick,
            message_id=f"{job}-1",
            cron="",
            now=tick,
            stale_after=timedelta(minutes=5),
        )
    with session_scope() as session:
        finish_run(
            session=session,
            job=job,
            tick=tick,
            message_id=f"{job}-1",
            status="failed",
            now=tick,
            duration_s=0.1,
        )


def test_a_fresh_system_waits_for_first_runs_and_a_failing_job_is_overdue(
    sqlite_engine: Engine,
) -> None:
    failed_run("heartbeat", NOW - timedelta(hours=1))
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
