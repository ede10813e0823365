"""Guarantee 3 in-process: after a gap, unclaimed ticks inside a job's window are re-sent once,
older ones counted and logged as missed. The real-process version is in test_processes.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from bgworkers.db.engine import session_scope
from bgworkers.scheduling.catch_up import CATCH_UP_JOB, catch_up
from bgworkers.scheduling.claims import claim_run
from bgworkers.scheduling.models import ScheduledJobState
from bgworkers.scheduling.periodic import CronPeriod
from bgworkers.scheduling.schedule import ScheduledJob
from tests.platform_helpers import captured_json_logs

DAILY = CronPeriod(ScheduledJob("daily", "0 2 * * *", "x", catch_up_window=timedelta(hours=6)))
FIVE = CronPeriod(ScheduledJob("five", "*/5 * * * *", "x"))
TEN = CronPeriod(ScheduledJob("ten", "*/10 * * * *", "x", catch_up_window=timedelta(minutes=25)))
OFF = CronPeriod(ScheduledJob("off", "0 2 * * *", "x", timedelta(hours=6)), override="off")
MARK = CronPeriod(ScheduledJob(CATCH_UP_JOB, "* * * * *", "x"))
PERIODS = (DAILY, FIVE, TEN, OFF, MARK)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def run_catch_up(now: datetime) -> list[tuple[str, datetime]]:
    sent: list[tuple[str, datetime]] = []
    with session_scope() as session:
        catch_up(
            session=session, periods=PERIODS, now=now, send=lambda p, t: sent.append((p.name, t))
        )
    return sent


def test_gap_resends_ticks_in_window_and_counts_the_rest(db_engine: Engine, registry) -> None:
    assert run_catch_up(at("2026-11-25 01:30")) == []  # first run: nothing to compare with
    assert run_catch_up(at("2026-11-25 01:31")) == []  # no gap
    with session_scope() as session:  # the 01:40 tick of "ten" did run before the outage
        claim_run(
            session=session,
            job="ten",
            tick=at("2026-11-25 01:40"),
            message_id="m",
            cron="*/10 * * * *",
            now=at("2026-11-25 01:40"),
            stale_after=timedelta(1),
        )
    with captured_json_logs() as logs:
        sent = run_catch_up(at("2026-11-25 02:20"))  # scheduler was down 01:31 -> 02:20
    assert sent == [
        ("daily", at("2026-11-25 02:00")),
        ("ten", at("2026-11-25 02:00")),
        ("ten", at("2026-11-25 02:10")),
    ]
    five_ticks = 9  # 01:35 ... 02:15, window zero
    assert (
        registry.get_sample_value("bgworkers_schedule_missed_ticks_total", {"periodic_job": "five"})
        == five_ticks
    )
    assert (
        registry.get_sample_value("bgworkers_schedule_missed_ticks_total", {"periodic_job": "ten"})
        == 1
    )  # 01:50
    assert (
        registry.get_sample_value(
            "bgworkers_schedule_caught_up_ticks_total", {"periodic_job": "ten"}
        )
        == 2
    )
    assert (
        registry.get_sample_value("bgworkers_schedule_missed_ticks_total", {"periodic_job": "off"})
        is None
    )
    with session_scope() as session:
        state = session.get(ScheduledJobState, "five")
        assert state is not None
        assert (state.missed_ticks, state.last_missed_tick) == (five_ticks, at("2026-11-25 02:15"))
    missed = {
        line["job"]: line["count"] for line in logs if line["event"] == "scheduled_ticks_missed"
    }
    assert missed == {"five": five_ticks, "ten": 1}
    # The same tick again (a second scheduler, a redelivery) or an older one: nothing twice.
    assert run_catch_up(at("2026-11-25 02:20")) == []
    assert run_catch_up(at("2026-11-25 02:19")) == []
    assert run_catch_up(at("2026-11-25 02:21")) == []


def test_ticks_older_than_the_window_are_not_resent(db_engine: Engine, registry) -> None:
    run_catch_up(at("2026-11-25 01:59"))
    sent = run_catch_up(at("2026-11-25 08:30"))  # daily 02:00 is 6.5 h old: missed
    assert sent == [("ten", at("2026-11-25 08:10")), ("ten", at("2026-11-25 08:20"))]
    assert (
        registry.get_sample_value(
            "bgworkers_schedule_missed_ticks_total", {"periodic_job": "daily"}
        )
        == 1
    )


def test_the_boundary_tick_is_rescanned_for_jobs_with_a_window(db_engine: Engine, registry) -> None:
    """The scheduler sent the 02:00 catch-up tick and died before the rest of that tick."""
    run_catch_up(at("2026-11-25 02:00"))
    sent = run_catch_up(at("2026-11-25 02:05"))
    assert sent == [("daily", at("2026-11-25 02:00")), ("ten", at("2026-11-25 02:00"))]
    # "five" has no window: its 02:00 tick is neither re-sent nor counted as missed.
    assert (
        registry.get_sample_value("bgworkers_schedule_missed_ticks_total", {"periodic_job": "five"})
        is None
    )


def test_a_publish_that_fails_part_way_is_completed_by_the_retry(
    db_engine: Engine, registry
) -> None:
    run_catch_up(at("2026-11-25 01:31"))
    sent: list[tuple[str, datetime]] = []
    failures = [RuntimeError("broker gone")]

    def flaky_send(period: CronPeriod, tick: datetime) -> None:
        if len(sent) == 1 and failures:
            raise failures.pop()
        sent.append((period.name, tick))

    def attempt() -> None:
        with session_scope() as session:
            catch_up(session=session, periods=PERIODS, now=at("2026-11-25 02:20"), send=flaky_send)

    with pytest.raises(RuntimeError):
        attempt()
    assert sent == [("daily", at("2026-11-25 02:00"))]
    attempt()  # the retry of the same catch-up tick
    # The first tick is sent again (unclaimed yet: its claim makes the copy harmless).
    assert sent[1:] == [
        ("daily", at("2026-11-25 02:00")),
        ("ten", at("2026-11-25 02:00")),
        ("ten", at("2026-11-25 02:10")),
    ]
    five_ticks = 9  # 01:35 ... 02:15: counted once, by the attempt that completed
    assert (
        registry.get_sample_value("bgworkers_schedule_missed_ticks_total", {"periodic_job": "five"})
        == five_ticks
    )
    assert (
        registry.get_sample_value("bgworkers_schedule_missed_ticks_total", {"periodic_job": "ten"})
        == 2
    )  # 01:40 and 01:50, beyond its 25-minute window
    with session_scope() as session:
        state = session.get(ScheduledJobState, "five")
        assert state is not None and state.missed_ticks == five_ticks
    assert run_catch_up(at("2026-11-25 02:20")) == []  # done: a third delivery finds nothing
