"""LogInterval: the one "at most one line per interval" used by every repeated condition."""

from __future__ import annotations

from bgworkers.logs.intervals import LogInterval, LogIntervalsByKey


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_first_call_is_due_then_one_per_interval_with_the_count_held_back() -> None:
    clock = Clock()
    interval = LogInterval(60.0, clock=clock)
    seen = []
    for second in range(0, 130, 10):
        clock.now = float(second)
        if interval.due():
            seen.append((second, interval.held_back))
    assert seen == [(0, 0), (60, 5), (120, 5)]


def test_reset_makes_the_next_call_due_at_once() -> None:
    clock = Clock()
    interval = LogInterval(60.0, clock=clock)
    assert interval.due()
    clock.now = 5.0
    assert not interval.due()
    interval.reset()
    clock.now = 6.0
    assert interval.due() and interval.held_back == 0


def test_each_key_has_its_own_interval() -> None:
    clock = Clock()
    by_key = LogIntervalsByKey(60.0, clock=clock)
    assert by_key.of("broker_unreachable").due()
    assert by_key.of("broker_auth_refused").due()
    clock.now = 30.0
    assert not by_key.of("broker_unreachable").due()
    assert by_key.of("broker_unreachable") is by_key.of("broker_unreachable")
