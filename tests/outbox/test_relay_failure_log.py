"""A relay failing for long (database or RabbitMQ away) logs once a minute, not per attempt."""

from __future__ import annotations

from bgworkers.outbox.relay import _FailureStreak
from tests.platform_helpers import captured_json_logs


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_line_when_it_starts_then_one_a_minute_then_one_when_it_ends() -> None:
    clock = Clock()
    streak = _FailureStreak(clock)
    with captured_json_logs() as logs:
        for second in range(0, 130, 5):  # every 5 s for a bit over two minutes
            clock.now = float(second)
            streak.failed("OperationalError: connection refused", retry_in_s=5.0)
        streak.ended()
        streak.ended()  # nothing more to say
    events = [(line["event"], line.get("failures")) for line in logs]
    assert events == [
        ("outbox_relay_failed", 1),
        ("outbox_relay_failed", 13),
        ("outbox_relay_failed", 25),
        ("outbox_relay_recovered", 26),
    ]
