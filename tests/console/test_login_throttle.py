"""Failed console logins: growing delays, then a lock-out, per address and per name."""

from __future__ import annotations

from bgworkers.console.web.security import Credentials, session_key
from bgworkers.console.web.throttle import LoginThrottle, ThrottlePolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delays_grow_then_the_address_is_locked_out_until_it_expires() -> None:
    clock = Clock()
    throttle = LoginThrottle(ThrottlePolicy(), clock=clock)
    delays = [throttle.failed(client="10.0.0.1", user=f"name{n}") for n in range(8)]
    assert delays == [0, 0, 0, 0.5, 1, 2, 4, 4]
    assert throttle.retry_after_s(client="10.0.0.1", user="other") == 60
    assert throttle.retry_after_s(client="10.0.0.2", user="other") == 0  # another client
    clock.now += 61
    assert throttle.retry_after_s(client="10.0.0.1", user="other") == 0
    throttle.failed(client="10.0.0.1", user="again")
    assert throttle.retry_after_s(client="10.0.0.1", user="") == 120  # doubled


def test_one_name_guessed_from_many_addresses_is_locked_out() -> None:
    throttle = LoginThrottle(ThrottlePolicy(), clock=Clock())
    for n in range(8):
        throttle.failed(client=f"10.0.1.{n}", user="ops")
    assert throttle.retry_after_s(client="10.9.9.9", user="ops") == 60
    assert throttle.retry_after_s(client="10.9.9.9", user="someone") == 0


def test_a_success_and_time_forget_failures_and_the_table_stays_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(ThrottlePolicy(max_keys=10), clock=clock)
    for _ in range(5):
        throttle.failed(client="10.0.0.1", user="ops")
    throttle.succeeded(client="10.0.0.1", user="ops")
    assert throttle.failed(client="10.0.0.1", user="ops") == 0
    clock.now += 901
    assert throttle.failed(client="10.0.0.1", user="ops") == 0  # the window passed
    for n in range(100):
        throttle.failed(client=f"10.0.2.{n}", user="x" * 10_000)
    assert len(throttle._keys) <= 10


def test_changing_a_credential_changes_the_session_key() -> None:
    base = session_key("secret", Credentials(user="ops", password="one"))
    assert base == session_key("secret", Credentials(user="ops", password="one"))
    assert base != session_key("secret", Credentials(user="ops", password="two"))
    assert base != session_key("other", Credentials(user="ops", password="one"))
    assert base != session_key("secret", Credentials(user="ops", password="one", token="t"))
