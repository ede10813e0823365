"""The worker side on dramatiq's stub broker with bgworkers' whole middleware stack.

Guarantee 5 (no overlap) and the in-process half of guarantee 4 (a failing periodic job is
retried, then dead-lettered, never acked unrun); the real-RabbitMQ halves are in
``test_processes.py``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import dramatiq
from sqlalchemy.engine import Engine
from sqlmodel import select

from bgworkers import queues
from bgworkers.db import session_scope
from bgworkers.errors import TransientError
from bgworkers.schedule import ScheduledJob
from bgworkers.scheduling.middleware import TICK_OPTION
from bgworkers.scheduling.models import ScheduledRun
from bgworkers.scheduling.periodic import CronPeriod
from tests.platform_helpers import captured_json_logs, running_worker, stub_broker

T1 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def periodic(name: str, cron: str = "* * * * *") -> CronPeriod:
    return CronPeriod(ScheduledJob(name, cron, "test job"))


def send_tick(actor: dramatiq.Actor, tick: datetime) -> None:
    # What periodiq sends: scheduled_at is the wake time, a few hundred ms past the minute.
    actor.send_with_options(scheduled_at=(tick + timedelta(seconds=0.4)).isoformat())


def runs(job: str) -> list[ScheduledRun]:
    with session_scope() as session:
        return list(session.exec(select(ScheduledRun).where(ScheduledRun.job == job)))


def test_a_job_still_running_at_its_next_tick_is_skipped(sqlite_engine: Engine, registry) -> None:
    broker = stub_broker()
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    @dramatiq.actor(broker=broker, queue_name=queues.MAINTENANCE, periodic=periodic("slow"))
    def slow() -> None:
        ran.append("run")
        started.set()
        release.wait(10)

    def overlaps() -> float | None:
        return registry.get_sample_value(
            "bgworkers_schedule_skipped_ticks_total", {"periodic_job": "slow", "reason": "overlap"}
        )

    with captured_json_logs() as logs, running_worker(broker):
        send_tick(slow, T1)
        assert started.wait(10)
        send_tick(slow, T1 + timedelta(minutes=1))  # while the 09:00 run is still going
        deadline = time.monotonic() + 10
        while not overlaps() and time.monotonic() < deadline:
            time.sleep(0.02)
        release.set()
        broker.join(queues.MAINTENANCE, timeout=10_000)
    assert ran == ["run"]
    assert {(r.tick, r.status) for r in runs("slow")} == {
        (T1, "succeeded"),
        (T1 + timedelta(minutes=1), "skipped_overlap"),
    }
    assert (
        registry.get_sample_value(
            "bgworkers_schedule_skipped_ticks_total", {"periodic_job": "slow", "reason": "overlap"}
        )
        == 1
    )
    skipped = [line for line in logs if line["event"] == "scheduled_tick_skipped"]
    assert [(line["job"], line["reason"]) for line in skipped] == [("slow", "overlap")]
    assert (
        registry.get_sample_value(
            "bgworkers_schedule_runs_total", {"periodic_job": "slow", "outcome": "succeeded"}
        )
        == 1
    )
    assert registry.get_sample_value(
        "bgworkers_schedule_last_success_timestamp_seconds", {"periodic_job": "slow"}
    )


def test_a_failing_periodic_job_is_retried_then_dead_lettered(
    sqlite_engine: Engine, registry
) -> None:
    broker = stub_broker()
    attempts: list[str | None] = []

    @dramatiq.actor(
        broker=broker,
        queue_name=queues.MAINTENANCE,
        periodic=periodic("flaky"),
        max_retries=2,
        min_backoff=10,
        max_backoff=20,
    )
    def flaky() -> None:
        message = dramatiq.middleware.CurrentMessage.get_current_message()
        attempts.append(message.options.get(TICK_OPTION) if message else None)
        raise TransientError("upstream down")

    with captured_json_logs() as logs, running_worker(broker):
        send_tick(flaky, T1)
        broker.join(queues.MAINTENANCE, timeout=10_000, fail_fast=False)
    # Three attempts of the same tick, although the message is far older than 30 s.
    assert attempts == [T1.isoformat()] * 3
    assert len(broker.dead_letters) == 1
    [row] = runs("flaky")
    assert (row.status, row.attempts, row.error) == ("failed", 3, "TransientError: upstream down")
    assert (
        registry.get_sample_value("bgworkers_schedule_failures_total", {"periodic_job": "flaky"})
        == 3
    )
    assert (
        registry.get_sample_value(
            "bgworkers_schedule_runs_total", {"periodic_job": "flaky", "outcome": "dead_lettered"}
        )
        == 1
    )
    finished = [line for line in logs if line["event"] == "scheduled_run_finished"]
    assert [line["outcome"] for line in finished] == ["retried", "retried", "dead_lettered"]
    assert finished[-1]["level"] == "error"


def test_a_message_sent_by_hand_runs_unclaimed(sqlite_engine: Engine) -> None:
    broker = stub_broker()
    ran: list[int] = []

    @dramatiq.actor(broker=broker, queue_name=queues.MAINTENANCE, periodic=periodic("manual"))
    def manual() -> None:
        ran.append(1)

    with running_worker(broker):
        manual.send()
        manual.send()
        broker.join(queues.MAINTENANCE, timeout=10_000)
    assert ran == [1, 1]
    assert runs("manual") == []
