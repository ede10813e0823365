"""Benchmark: cost of the scheduler's cron answers, the work periodiq asks for every minute.

periodiq calls ``validate(now)`` and ``next_valid_date(now)`` on every periodic actor at each
wake-up (every minute, because of the heartbeat). Prints microseconds per call for the whole
table in a zone with daylight saving, and the time to list a year of ticks per entry. Asserts
nothing about speed.

    python bench/scheduling_matcher.py [--zone Europe/Paris] [--calls 20000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import pendulum
from _isolation import quiet_logs

from bgworkers.scheduling.periodic import CronPeriod
from bgworkers.scheduling.schedule import SCHEDULE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zone", default="Europe/Paris")
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    quiet_logs()
    periods = [CronPeriod(entry, timezone=args.zone) for entry in SCHEDULE]
    start = pendulum.datetime(2026, 3, 28, 0, 0, tz="Asia/Kolkata")
    wakes = [start + timedelta(minutes=i, seconds=0.4) for i in range(args.calls)]
    began = time.perf_counter()
    for now in wakes:
        for period in periods:
            period.validate(now)
            period.next_valid_date(now)
    elapsed = time.perf_counter() - began
    per_wake = elapsed / len(wakes)
    print(f"zone {args.zone}, {len(periods)} entries, {len(wakes)} simulated wake-ups")
    print(f"  one wake-up (validate + next_valid_date for every entry): {per_wake * 1e6:.1f} us")
    print(f"  per call pair: {per_wake / len(periods) * 1e6:.2f} us")
    year = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    for period in periods:
        fresh = CronPeriod(period.job, timezone=args.zone)
        began = time.perf_counter()
        ticks = fresh.ticks_between(*year)
        print(
            f"  year of {period.name:<26} {period.cron:<14} {len(ticks):>7} ticks "
            f"in {(time.perf_counter() - began) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
