"""Failed console logins: growing delays, then a lock-out, per address and per name."""

from __future__ import annotations

import re

import httpx
from dramatiq.brokers.stub import StubBroker
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.console.models import LoginFailures
from bgworkers.console.operations import Console
from bgworkers.console.web.app import WebConfig
from bgworkers.console.web.security import Credentials, session_key
from bgworkers.console.web.throttle import LoginThrottle, ThrottlePolicy
from bgworkers.db.engine import session_scope
from bgworkers.settings import get_settings
from tests.console.serving import serving


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Throttle:
    """The throttle with each step in its own transaction, as the login page runs it."""

    def __init__(self, engine: Engine, policy: ThrottlePolicy, clock: Clock) -> None:
        self.engine = engine
        self.throttle = LoginThrottle(policy, clock=clock)

    def failed(self, **who: str) -> float:
        with session_scope(self.engine) as session:
            return self.throttle.failed(session, **who)

    def retry_after_s(self, **who: str) -> float:
        with session_scope(self.engine) as session:
            return self.throttle.retry_after_s(session, **who)

    def succeeded(self, **who: str) -> None:
        with session_scope(self.engine) as session:
            self.throttle.succeeded(session, **who)


def test_delays_grow_then_the_address_is_locked_out_until_it_expires(db_engine: Engine) -> None:
    clock = Clock()
    throttle = Throttle(db_engine, ThrottlePolicy(), clock)
    delays = [throttle.failed(client="10.0.0.1", user=f"name{n}") for n in range(8)]
    assert delays == [0, 0, 0, 0.5, 1, 2, 4, 4]
    assert throttle.retry_after_s(client="10.0.0.1", user="other") == 60
    assert throttle.retry_after_s(client="10.0.0.2", user="other") == 0  # another client
    clock.now += 61
    assert throttle.retry_after_s(client="10.0.0.1", user="other") == 0
    throttle.failed(client="10.0.0.1", user="again")
    assert throttle.retry_after_s(client="10.0.0.1", user="") == 120  # doubled


def test_one_name_guessed_from_many_addresses_is_locked_out(sqlite_engine: Engine) -> None:
    throttle = Throttle(sqlite_engine, ThrottlePolicy(), Clock())
    for n in range(8):
        throttle.failed(client=f"10.0.1.{n}", user="ops")
    assert throttle.retry_after_s(client="10.9.9.9", user="ops") == 60
    assert throttle.retry_after_s(client="10.9.9.9", user="someone") == 0


def test_a_success_and_time_forget_failures_and_the_table_stays_bounded(
    db_engine: Engine,
) -> None:
    clock = Clock()
    throttle = Throttle(db_engine, ThrottlePolicy(max_keys=10), clock)
    for _ in range(5):
        throttle.failed(client="10.0.0.1", user="ops")
    throttle.succeeded(client="10.0.0.1", user="ops")
    assert throttle.failed(client="10.0.0.1", user="ops") == 0
    clock.now += 901
    assert throttle.failed(client="10.0.0.1", user="ops") == 0  # the window passed
    for n in range(100):
        clock.now += 0.001
        throttle.failed(client=f"10.0.2.{n}", user="x" * 10_000)
    with Session(db_engine) as session:
        assert len(session.exec(select(LoginFailures)).all()) <= 10


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found[1]


def test_two_console_processes_count_the_same_failures(postgres_engine: Engine) -> None:
    """Two apps (two console processes behind a load balancer) on one database: guesses
    spread over both are counted together, and the lock-out holds on both."""
    settings = get_settings()

    def config() -> WebConfig:
        return WebConfig(
            settings=settings,
            credentials=Credentials(user="ops", password="right"),
            no_auth=False,
            session_secret="test-only-session-secret",
            console_for=lambda who: Console(
                settings=settings, broker=StubBroker(), engine=postgres_engine, who=who
            ),
            throttle=LoginThrottle(ThrottlePolicy(first_delay_s=0.01, max_delay_s=0.02)),
        )

    def attempt(client: httpx.Client, password: str) -> int:
        form = {"user": "ops", "password": password, "csrf": csrf_of(client.get("/login").text)}
        return client.post("/login", data=form).status_code

    policy = ThrottlePolicy()
    with (
        serving(config()) as one,
        serving(config()) as two,
        httpx.Client(base_url=one) as first,
        httpx.Client(base_url=two) as second,
    ):
        statuses = [attempt((first, second)[n % 2], "wrong") for n in range(policy.lock_after)]
        assert statuses == [401] * policy.lock_after  # 4 on each: alone, neither would lock
        assert attempt(first, "right") == 429
        assert attempt(second, "right") == 429
    with Session(postgres_engine) as session:
        rows = {row.key: row.failures for row in session.exec(select(LoginFailures))}
    assert rows == {"client:127.0.0.1": 8, "user:ops": 8}


def test_changing_a_credential_changes_the_session_key() -> None:
    base = session_key("secret", Credentials(user="ops", password="one"))
    assert base == session_key("secret", Credentials(user="ops", password="one"))
    assert base != session_key("secret", Credentials(user="ops", password="two"))
    assert base != session_key("other", Credentials(user="ops", password="one"))
    assert base != session_key("secret", Credentials(user="ops", password="one", token="t"))
