from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers.maintenance.heartbeat import record_heartbeat
from bgworkers.monitoring.job_health import JobHealthCollector, expected_intervals
from bgworkers.scheduling.models import ScheduledRun
from bgworkers.settings import load_settings


def test_expected_intervals_follow_the_effective_schedule() -> None:
    settings = load_settings(
        schedule_overrides={"sync_notion_pages": "off", "cleanup_temp_files": "0 */6 * * *"}
    )
    intervals = expected_intervals(settings, now=datetime(2026, 11, 25, tzinfo=UTC))
    assert intervals["heartbeat"] == 60
    assert intervals["backup_user_data"] == 7 * 86400
    assert intervals["cleanup_temp_files"] == 6 * 3600
    assert "sync_notion_pages" not in intervals  # disabled: never overdue


def test_last_success_and_scheduler_tick_come_from_the_database(db_engine: Engine) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with Session(db_engine) as session:
        session.add(
            ScheduledRun(
                job="cleanup_temp_files",
                tick=now - timedelta(hours=3),
                status="succeeded",
                message_id="m1",
                claimed_at=now,
                finished_at=now - timedelta(hours=2),
            )
        )
        session.add(
            ScheduledRun(
                job="heartbeat",
                tick=now,
                status="failed",
                message_id="m2",
                claimed_at=now,
                finished_at=now,
            )
        )
        record_heartbeat(session=session, now=now, scheduled_at=now - timedelta(seconds=20))
        session.commit()
    collector = JobHealthCollector(load_settings(), start=False)
    registry = CollectorRegistry()
    registry.register(collector)
    last = "bgworkers_job_last_success_timestamp_seconds"
    assert registry.get_sample_value(last, {"periodic_job": "cleanup_temp_files"}) is None
    collector.refresh()
    assert (
        registry.get_sample_value(last, {"periodic_job": "cleanup_temp_files"})
        == (now - timedelta(hours=2)).timestamp()
    )
    # No success yet (its only run failed): the collector's start time, so it can go overdue.
    started = registry.get_sample_value(last, {"periodic_job": "heartbeat"})
    assert started is not None and started > (now - timedelta(minutes=5)).timestamp()
    assert (
        registry.get_sample_value("bgworkers_scheduler_last_tick_timestamp_seconds")
        == (now - timedelta(seconds=20)).timestamp()
    )
