"""Guarantees 2, 3, 4 and 7 with real ``periodiq bgworkers`` processes and the real RabbitMQ.

Each scheduler is a real ``periodiq bgworkers tests.scheduling.probe_jobs`` subprocess, run
with ``TZ=Asia/Kolkata`` (its local zone differs from the configured UTC) and with the
test-only clock offset ``BGW_SCHEDULER_CLOCK_OFFSET_S``, so it starts a few seconds before a
chosen tick instead of making the test wait for a real minute; "down for ten minutes" is a
restart with a clock ten minutes further on. Every job of the schedule table except the
catch-up job is turned off with ``BGW_SCHEDULE_OVERRIDES``; the probe jobs
(``probe_jobs.py``) record each run. The worker is bgworkers' own broker consumed in this
process (``app_worker``), with the real middleware stack.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import dramatiq
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from bgworkers import queues
from bgworkers.db.engine import session_scope
from bgworkers.scheduling.catch_up import CATCH_UP_JOB
from bgworkers.scheduling.models import ScheduledRun
from tests.platform_helpers import wait_for
from tests.scheduling import probe_jobs
from tests.scheduling.scheduler_process import Scheduler, at, offset_to
from tests.tcp_relay import TcpRelay

#: Each test starts up to three scheduler processes, each allowed STARTUP_S.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MINUTE = timedelta(minutes=1)
#: Seconds a wait that includes a scheduler's start may take: a ``periodiq bgworkers`` process
#: imports for seconds, and for over 40 s on a loaded machine. A deadline, not a speed check.
STARTUP_S = 150


@pytest.fixture
def schedulers(tmp_path: Path) -> Iterator[list[Scheduler]]:
    started: list[Scheduler] = []
    yield started
    for scheduler in started:
        scheduler.kill()


@pytest.fixture(autouse=True)
def _fresh_probe_runs() -> None:
    probe_jobs.RUNS.clear()


def probe_runs(job: str) -> list[tuple[datetime, int]]:
    return [(datetime.fromisoformat(t), n) for j, t, n in list(probe_jobs.RUNS) if j == job]


def claimed(job: str) -> list[ScheduledRun]:
    with session_scope() as session:
        rows = session.exec(select(ScheduledRun).where(ScheduledRun.job == job))
        return sorted(rows, key=lambda r: r.tick)


def gap_ticks() -> list[datetime]:
    """Every-minute ticks inside the catch-up job's gap (what a dead scheduler did not send)."""
    ticks = [r.tick for r in claimed(CATCH_UP_JOB)]
    gaps = [(a, b) for a, b in itertools.pairwise(ticks) if b - a > MINUTE]
    assert len(gaps) == 1, ticks
    start, end = gaps[0]
    return [start + i * MINUTE for i in range(1, (end - start) // MINUTE)]


def drain(broker: dramatiq.Broker) -> None:
    broker.join(queues.MAINTENANCE, timeout=30_000)


def test_two_schedulers_and_a_restart_run_each_tick_once(
    db_engine: Engine, app_broker, app_worker, rabbitmq_url: str, schedulers, tmp_path, registry
) -> None:
    offset = offset_to(at("2026-11-25 10:57:56"))
    probes = ["probe_every_minute"]
    a, b = (
        Scheduler(tmp_path, name, url=rabbitmq_url, offset_s=offset, probes=probes)
        for name in ("a", "b")
    )
    schedulers += [a.start(), b.start()]

    def duplicates() -> float:
        value = registry.get_sample_value(
            "bgworkers_schedule_skipped_ticks_total",
            {"periodic_job": "probe_every_minute", "reason": "duplicate"},
        )
        return value or 0.0

    def all_logged_sends_arrived() -> bool:
        """A scheduler logs a send just before it publishes: killed in between, it would
        count a message that never left. Kills wait until what was logged has arrived."""
        logged = a.sends("probe_every_minute") + b.sends("probe_every_minute")
        return len(probe_runs("probe_every_minute")) + duplicates() >= logged

    wait_for(
        lambda: a.sends("probe_every_minute") >= 2 and b.sends("probe_every_minute") >= 2,
        timeout_s=STARTUP_S,
        what="both schedulers to send two ticks",
        watch=[a, b],
    )
    wait_for(
        all_logged_sends_arrived, timeout_s=30, what="the logged sends to arrive", watch=[a, b]
    )
    a.kill()  # restarted inside the minute: periodiq sends that minute again
    sent_before = a.sends("probe_every_minute")
    a.start()
    wait_for(
        lambda: a.sends("probe_every_minute") > sent_before,
        timeout_s=STARTUP_S,
        what="the restart's send",
        watch=[a],
    )
    wait_for(
        all_logged_sends_arrived, timeout_s=30, what="the logged sends to arrive", watch=[a, b]
    )
    for scheduler in (a, b):
        scheduler.kill()
    drain(app_broker)
    sent = a.sends("probe_every_minute") + b.sends("probe_every_minute")
    # join() returns once no message is ready; the last one may still be in a worker thread.
    wait_for(
        lambda: len(probe_runs("probe_every_minute")) + duplicates() >= sent,
        timeout_s=30,
        what="every sent tick to be run or skipped",
    )
    runs = probe_runs("probe_every_minute")
    ticks = [tick for tick, _ in runs]
    assert len(ticks) == len(set(ticks)), runs  # never twice for a tick
    assert at("2026-11-25 10:58") in ticks
    assert sent >= len(ticks) + 3  # both sent each tick, plus the restart's
    assert duplicates() == sent - len(ticks)
    assert [(r.tick, r.status, r.attempts) for r in claimed("probe_every_minute")] == [
        (tick, "succeeded", 1) for tick in sorted(ticks)
    ]


def test_missed_ticks_are_caught_up_within_their_window_once(
    sqlite_engine: Engine, app_broker, app_worker, rabbitmq_url: str, schedulers, tmp_path, registry
) -> None:
    probes = ["probe_every_minute", "probe_daily"]
    first = Scheduler(
        tmp_path,
        "first",
        url=rabbitmq_url,
        offset_s=offset_to(at("2026-11-25 10:56:56")),
        probes=probes,
    )
    schedulers.append(first.start())
    # Its first run, at whichever minute the start reached (10:56 or later on its clock).
    wait_for(
        lambda: claimed(CATCH_UP_JOB),
        timeout_s=STARTUP_S,
        what="the first catch-up run",
        watch=[first],
    )
    first.kill()  # down from then to 11:05 (scheduler clock)
    assert first.sends("probe_daily") == 0, "the first scheduler reached 11:00 before it was killed"
    offset = offset_to(at("2026-11-25 11:05:56"))
    second = Scheduler(tmp_path, "second", url=rabbitmq_url, offset_s=offset, probes=probes)
    schedulers.append(second.start())
    wait_for(
        lambda: probe_runs("probe_daily"),
        timeout_s=STARTUP_S,
        what="the 11:00 daily catch-up",
        watch=[second],
    )
    wait_for(
        lambda: any(r.tick >= at("2026-11-25 11:06") for r in claimed(CATCH_UP_JOB)),
        timeout_s=STARTUP_S,
        what="the next catch-up run",
        watch=[second],
    )
    second.kill()  # and a restart inside the minute: nothing may run twice
    third = Scheduler(tmp_path, "third", url=rabbitmq_url, offset_s=offset, probes=probes)
    schedulers.append(third.start())
    wait_for(
        lambda: third.sends(CATCH_UP_JOB) >= 1,
        timeout_s=STARTUP_S,
        what="the restart's send",
        watch=[third],
    )
    third.kill()
    drain(app_broker)

    assert probe_runs("probe_daily") == [(at("2026-11-25 11:00"), 0)]  # once, in its window
    missed = gap_ticks()
    every_minute = [t for t, _ in probe_runs("probe_every_minute")]
    assert len(every_minute) == len(set(every_minute))
    assert not set(missed) & set(every_minute)  # window 0: not caught up...
    assert registry.get_sample_value(  # ...but counted
        "bgworkers_schedule_missed_ticks_total", {"periodic_job": "probe_every_minute"}
    ) == len(missed)
    assert (
        registry.get_sample_value(
            "bgworkers_schedule_caught_up_ticks_total", {"periodic_job": "probe_daily"}
        )
        == 1
    )


def test_a_failing_periodic_job_is_retried_and_dead_lettered(
    sqlite_engine: Engine, app_broker, app_worker, rabbitmq_url: str, schedulers, tmp_path, registry
) -> None:
    scheduler = Scheduler(
        tmp_path,
        "s",
        url=rabbitmq_url,
        offset_s=offset_to(at("2026-11-25 10:58:20")),
        probes=["probe_flaky"],
    )
    schedulers.append(scheduler.start())
    wait_for(
        lambda: len(probe_runs("probe_flaky")) >= 3,
        timeout_s=STARTUP_S,
        what="three attempts",
        watch=[scheduler],
    )
    scheduler.kill()  # before its next tick, about 40 s away
    drain(app_broker)
    wait_for(
        lambda: app_broker.get_queue_message_counts(queues.MAINTENANCE)[2] == 1,
        timeout_s=10,
        what="the dead letter",
        watch=[],
    )

    # The tick the start reached: 10:58 unless it took over 40 s.
    tick = probe_runs("probe_flaky")[0][0]
    assert tick >= at("2026-11-25 10:58")
    assert probe_runs("probe_flaky") == [(tick, n) for n in (0, 1, 2)]
    [row] = claimed("probe_flaky")
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.error == "TransientError: probe failure"
    assert (
        registry.get_sample_value(
            "bgworkers_schedule_runs_total",
            {"periodic_job": "probe_flaky", "outcome": "dead_lettered"},
        )
        == 1
    )


def test_the_scheduler_waits_out_a_broker_outage_and_catch_up_covers_a_restart(
    sqlite_engine: Engine, app_broker, app_worker, rabbitmq_url: str, schedulers, tmp_path, registry
) -> None:
    parsed = urlparse(rabbitmq_url)
    relay = TcpRelay((parsed.hostname or "127.0.0.1", parsed.port or 5672))
    relay.start()
    via_relay = urlunparse(
        parsed._replace(netloc=f"{parsed.netloc.rsplit(':', 1)[0]}:{relay.port}")
    )
    if parsed.port is None:
        via_relay = urlunparse(parsed._replace(netloc=f"{parsed.netloc}:{relay.port}"))
    probes = ["probe_every_minute", "probe_daily"]
    first = Scheduler(
        tmp_path,
        "first",
        url=via_relay,
        offset_s=offset_to(at("2026-11-25 10:58:20")),  # 40 s for the start
        probes=probes,
    )
    schedulers.append(first.start())
    try:
        wait_for(
            lambda: any(r.tick == at("2026-11-25 10:58") for r in claimed(CATCH_UP_JOB)),
            timeout_s=STARTUP_S,
            what="the 10:58 catch-up run",
            watch=[first],
        )
        relay.stop()  # RabbitMQ unreachable for the scheduler (only)
        wait_for(
            lambda: "broker_unreachable" in first.log.read_text(errors="replace"),
            timeout_s=60,
            what="the scheduler's line about the outage at its 10:59 tick",
            watch=[first],
        )
        relay.start()
        wait_for(
            lambda: any(r.tick == at("2026-11-25 10:59") for r in claimed(CATCH_UP_JOB)),
            timeout_s=60,
            what="the 10:59 tick, sent once RabbitMQ was back",
            watch=[first],
        )
        # Then the scheduler is down for ten minutes (on its clock) and another one starts.
        first.kill()
        second = Scheduler(
            tmp_path,
            "second",
            url=via_relay,
            offset_s=offset_to(at("2026-11-25 11:08:50")),
            probes=probes,
        )
        schedulers.append(second.start())
        wait_for(
            lambda: probe_runs("probe_daily"),
            timeout_s=STARTUP_S,
            what="the 11:00 daily catch-up",
            watch=[second],
        )
        second.kill()
    finally:
        relay.stop()
    drain(app_broker)

    assert probe_runs("probe_daily") == [(at("2026-11-25 11:00"), 0)]
    missed = gap_ticks()
    assert at("2026-11-25 10:59") not in missed  # retried, not lost
    assert at("2026-11-25 11:00") in missed
    assert registry.get_sample_value(
        "bgworkers_schedule_missed_ticks_total", {"periodic_job": "probe_every_minute"}
    ) == len(missed)
