"""Jobs that decide by the time judge by the message's tick, not by the worker's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dramatiq
from sqlalchemy.engine import Engine

from bgworkers import queues
from bgworkers.reminders.summary import due_dates_by_zone
from bgworkers.scheduling.middleware import TICK_OPTION, scheduled_now
from bgworkers.scheduling.periodic import CronPeriod
from bgworkers.scheduling.schedule import ScheduledJob
from tests.platform_helpers import running_worker, stub_broker

# 08:00 in Paris; the worker's clock (the real one, years later) is far from it.
TICK = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
FALLBACK = datetime(2000, 1, 1, tzinfo=UTC)


def test_a_scheduled_message_sees_its_tick_and_a_hand_sent_one_the_fallback(
    sqlite_engine: Engine,
) -> None:
    broker = stub_broker()
    seen: list[datetime] = []

    @dramatiq.actor(
        broker=broker,
        queue_name=queues.MAINTENANCE,
        periodic=CronPeriod(ScheduledJob("clocked", "* * * * *", "test job")),
    )
    def clocked() -> None:
        seen.append(scheduled_now(fallback=FALLBACK))

    with running_worker(broker):
        clocked.send_with_options(**{TICK_OPTION: TICK.isoformat()})
        broker.join(queues.MAINTENANCE, timeout=10_000)
        clocked.send()
        broker.join(queues.MAINTENANCE, timeout=10_000)
    assert seen == [TICK, FALLBACK]
    assert scheduled_now(fallback=FALLBACK) == FALLBACK  # outside any message


def test_the_0800_tick_is_due_although_the_worker_clock_is_a_second_behind() -> None:
    behind = TICK - timedelta(seconds=1)
    assert due_dates_by_zone(["Europe/Paris"], now=behind) == {}
    assert due_dates_by_zone(["Europe/Paris"], now=TICK) == {TICK.date(): ["Europe/Paris"]}
