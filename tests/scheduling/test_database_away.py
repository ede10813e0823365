"""A tick whose claim meets a database that does not answer is skipped and counted.

The once-a-minute state belongs to each broker's ``ScheduleGuard`` (a fresh one per stub
broker), so no test resets a module's state; the interval itself is injected below.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dramatiq
import pytest
from sqlalchemy.engine import Engine

from bgworkers import queues
from bgworkers.db.engine import make_engine, use_engine
from bgworkers.logs.intervals import LogInterval
from bgworkers.scheduling.middleware import outcome_not_recorded, skip_tick
from bgworkers.scheduling.periodic import CronPeriod
from bgworkers.scheduling.schedule import ScheduledJob
from tests.platform_helpers import captured_json_logs, running_worker, stub_broker, wait_for

T1 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def database_away_engine() -> Iterator[Engine]:
    """An engine whose every connection is refused (nothing listens on port 1)."""
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    use_engine(engine)
    yield engine
    use_engine(None)
    engine.dispose()


def test_ticks_are_skipped_counted_and_logged_once_never_dead_lettered(
    database_away_engine: Engine, registry
) -> None:
    broker = stub_broker()
    ran: list[str] = []
    period = CronPeriod(ScheduledJob("beat", "* * * * *", "test job"))

    @dramatiq.actor(broker=broker, queue_name=queues.MAINTENANCE, periodic=period, max_retries=0)
    def beat() -> None:
        ran.append("run")

    def skipped() -> float:
        labels = {"periodic_job": "beat", "reason": "database_unavailable"}
        return registry.get_sample_value("bgworkers_schedule_skipped_ticks_total", labels) or 0

    with captured_json_logs() as logs, running_worker(broker):
        for minute in range(3):
            tick = T1 + timedelta(minutes=minute, seconds=0.4)
            beat.send_with_options(scheduled_at=tick.isoformat())
        wait_for(lambda: skipped() == 3, what="three skipped ticks")
        broker.join(queues.MAINTENANCE)
    assert ran == []
    dead = registry.get_sample_value(
        "bgworkers_messages_dead_lettered_total", {"queue": "maintenance", "actor": "beat"}
    )
    assert not dead
    assert not broker.dead_letters
    notices = [line for line in logs if line.get("reason") == "database_unavailable"]
    assert len(notices) == 1 and "BGW_DATABASE_URL" in notices[0]["hint"]
    assert not [line for line in logs if "Traceback" in str(line) or line["level"] == "critical"]


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_interval_of_the_injected_notices_with_how_many_were_held_back() -> None:
    from sqlalchemy.exc import OperationalError

    clock = Clock()
    notices = LogInterval(60.0, clock=clock)
    away = OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
    with captured_json_logs() as logs:
        for second in (0, 10, 20):
            clock.now = float(second)
            skip_tick("beat", T1, away, notices=notices)
        clock.now = 61.0
        outcome_not_recorded("beat", T1, away, notices=notices)
        clock.now = 70.0
        skip_tick("beat", T1, away, notices=notices)
    lines = [(line["event"], line["similar_held_back"], line["error"]) for line in logs]
    assert lines == [
        ("scheduled_tick_skipped", 0, "ConnectionRefusedError: connection refused"),
        ("scheduled_run_not_recorded", 2, "ConnectionRefusedError: connection refused"),
    ]
