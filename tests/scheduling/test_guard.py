"""The worker side on dramatiq's stub broker with bgworkers' whole middleware stack.

Guarantee 5 (no overlap) and the in-process half of guarantee 4 (a failing periodic job is
retried, then dead-lettered, never acked unrun); the real-RabbitMQ halves are in
``test_processes.py``.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import pytest
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from dramatiq.message import Message
from dramatiq.middleware import SkipMessage
from sqlalchemy.engine import Engine
from sqlmodel import select

from bgworkers import queues
from bgworkers.db.engine import session_scope, utcnow
from bgworkers.errors import TransientError
from bgworkers.middleware.retry_policy import RetryPolicy
from bgworkers.scheduling.claims import claim_run, finish_run
from bgworkers.scheduling.middleware import (
    BUSY_RETRIES_OPTION,
    TICK_OPTION,
    ScheduleGuard,
    max_busy_retries,
)
from bgworkers.scheduling.models import ScheduledJobState, ScheduledRun
from bgworkers.scheduling.periodic import CronPeriod
from bgworkers.scheduling.schedule import ScheduledJob
from tests.platform_helpers import captured_json_logs, running_worker, stub_broker, wait_for

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
        try:
            wait_for(lambda: bool(overlaps()), timeout_s=10, what="the second tick skipped")
        finally:
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


def guard_and_policy(broker: dramatiq.Broker) -> tuple[ScheduleGuard, RetryPolicy]:
    guard = next(m for m in broker.middleware if isinstance(m, ScheduleGuard))
    policy = next(m for m in broker.middleware if isinstance(m, RetryPolicy))
    return guard, policy


def delayed(broker: StubBroker) -> list[Message[Any]]:
    """The messages waiting in the maintenance delay queue (retries), removed from it."""
    waiting = broker.queues[dq_name(queues.MAINTENANCE)]
    found = []
    while not waiting.empty():
        found.append(Message.decode(waiting.get_nowait()))
    return found


def job_lock(job: str) -> str | None:
    with session_scope() as session:
        state = session.get(ScheduledJobState, job)
        return state.running_message_id if state is not None else None


def test_a_retry_meeting_a_running_later_tick_waits_without_spending_retries(
    sqlite_engine: Engine, registry
) -> None:
    broker = stub_broker()

    @dramatiq.actor(
        broker=broker,
        queue_name=queues.MAINTENANCE,
        periodic=periodic("busy"),
        max_retries=1,
        time_limit=30_000,
    )
    def busy() -> None:
        raise AssertionError("never runs while its later tick holds the lock")

    guard, _ = guard_and_policy(broker)
    stale_after = timedelta(seconds=30) + timedelta(seconds=60)
    # The 09:00 tick failed once (its one allowed retry is this message); 09:01 now runs.
    message = busy.message_with_options(bgw_tick=T1.isoformat(), retries=1)
    with session_scope() as session:
        claim_run(
            session=session,
            job="busy",
            tick=T1,
            message_id=message.message_id,
            cron="* * * * *",
            now=utcnow(),
            stale_after=stale_after,
        )
        finish_run(
            session=session,
            job="busy",
            tick=T1,
            message_id=message.message_id,
            status="retrying",
            now=utcnow(),
            duration_s=0.1,
        )
        claim_run(
            session=session,
            job="busy",
            tick=T1 + timedelta(minutes=1),
            message_id="later",
            cron="* * * * *",
            now=utcnow(),
            stale_after=stale_after,
        )
    assert job_lock("busy") == "later"

    first = MessageProxy(message)
    with pytest.raises(SkipMessage):
        guard.before_process_message(broker, first)
    assert not first.failed  # acked: its copy waits in the delay queue
    [again] = delayed(broker)
    assert again.message_id == message.message_id
    assert again.options["retries"] == 1  # the retry budget is untouched
    assert again.options[BUSY_RETRIES_OPTION] == 1
    assert {r.tick: r.status for r in runs("busy")}[T1] == "retrying"

    limit = max_busy_retries(stale_after)
    last = MessageProxy(again.copy(options={**again.options, BUSY_RETRIES_OPTION: limit}))
    with captured_json_logs() as logs, pytest.raises(SkipMessage):
        guard.before_process_message(broker, last)
    assert last.failed  # dead-lettered
    assert delayed(broker) == []
    assert {r.tick: r.status for r in runs("busy")}[T1] == "failed"
    assert job_lock("busy") == "later"  # the running later tick keeps its lock
    assert [line["reason"] for line in logs if line["event"] == "scheduled_run_gave_up"] == ["busy"]
    assert (
        registry.get_sample_value(
            "bgworkers_schedule_runs_total", {"periodic_job": "busy", "outcome": "dead_lettered"}
        )
        == 1
    )


def test_a_retry_claimed_before_the_first_attempt_finishes_keeps_its_lock(
    sqlite_engine: Engine,
) -> None:
    """RetryPolicy's after-hook (last middleware, so first to run) re-enqueues the retry; with
    a short backoff another thread claims it before this attempt's ScheduleGuard after-hook."""
    broker = stub_broker()

    @dramatiq.actor(
        broker=broker,
        queue_name=queues.MAINTENANCE,
        periodic=periodic("quick"),
        max_retries=3,
        min_backoff=10,
        max_backoff=20,
    )
    def quick() -> None:
        pass

    guard, policy = guard_and_policy(broker)
    message = quick.message_with_options(bgw_tick=T1.isoformat())
    first = MessageProxy(message)
    guard.before_process_message(broker, first)
    error = TransientError("upstream down")
    policy.after_process_message(broker, first, exception=error)
    [queued] = delayed(broker)
    retry = MessageProxy(queued)
    guard.before_process_message(broker, retry)  # on another worker thread
    guard.after_process_message(broker, first, exception=error)  # the first attempt, late
    assert job_lock("quick") == message.message_id
    [row] = runs("quick")
    assert (row.status, row.attempts) == ("running", 2)
    guard.after_process_message(broker, retry)
    assert job_lock("quick") is None
    [row] = runs("quick")
    assert (row.status, row.attempts, row.error) == ("succeeded", 2, None)
