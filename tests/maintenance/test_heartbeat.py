from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers.maintenance.heartbeat import record_heartbeat
from bgworkers.maintenance.models import SchedulerHeartbeat


def test_heartbeat_stamps_row_and_metric(db_engine: Engine, registry) -> None:
    first = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    with Session(db_engine) as session:
        record_heartbeat(session=session, now=first + timedelta(seconds=2), scheduled_at=first)
        session.commit()
    # A late duplicate delivery of an older tick must not move scheduled_at backwards.
    with Session(db_engine) as session:
        record_heartbeat(
            session=session,
            now=first + timedelta(minutes=1, seconds=3),
            scheduled_at=first - timedelta(minutes=5),
        )
        session.commit()
    with Session(db_engine) as session:
        row = session.get(SchedulerHeartbeat, "scheduler")
        assert row is not None
        assert row.beats == 2
        assert row.scheduled_at == first
        assert row.processed_at == first + timedelta(minutes=1, seconds=3)
        assert row.processed_at.tzinfo is not None
    assert registry.get_sample_value("bgworkers_scheduler_heartbeats_total") == 2
    assert (
        registry.get_sample_value("bgworkers_scheduler_heartbeat_timestamp_seconds")
        == (first + timedelta(minutes=1, seconds=3)).timestamp()
    )
