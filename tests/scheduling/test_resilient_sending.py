"""The scheduler's sends retry with backoff while RabbitMQ is away (no broker needed)."""

from __future__ import annotations

import pika.exceptions
from dramatiq.errors import ConnectionClosed

from bgworkers.scheduling.resilient_sending import MAX_DELAY_S, send_with_backoff
from tests.platform_helpers import captured_json_logs

URL = "amqp://guest:secret@127.0.0.1:5999/"


def test_a_send_is_retried_with_growing_delays_and_logged_once_per_interval() -> None:
    attempts: list[int] = []
    slept: list[float] = []
    now = [0.0]

    def send() -> None:
        attempts.append(1)
        if len(attempts) <= 8:
            cause = pika.exceptions.AMQPConnectionError("connection refused")
            raise ConnectionClosed(cause) from cause

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    with captured_json_logs() as logs:
        failures = send_with_backoff(
            send, job="heartbeat", broker_url=URL, sleep=sleep, clock=lambda: now[0]
        )
    assert failures == 8 and len(attempts) == 9
    logs = [e for e in logs if e["logger"] == "bgworkers.scheduling"]
    assert slept == [1.0, 2.0, 4.0, 8.0, 16.0, MAX_DELAY_S, MAX_DELAY_S, MAX_DELAY_S]
    unreachable = [e for e in logs if e["event"] == "broker_unreachable"]
    # At 0 s, then at 61 s (1+2+4+8+16+30): one line per 60-s interval.
    assert [e["failed_attempts"] for e in unreachable] == [1, 7]
    assert "secret" not in str(unreachable[0]["hint"])
    assert "keeps retrying" in str(unreachable[0]["hint"])
    assert [e["event"] for e in logs][-1] == "scheduler_send_recovered"


def test_a_refused_password_is_named_as_such() -> None:
    calls: list[int] = []

    def send() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise pika.exceptions.ProbableAuthenticationError("ACCESS_REFUSED - Login was refused")

    with captured_json_logs() as logs:
        send_with_backoff(send, job="heartbeat", broker_url=URL, sleep=lambda _: None)
    assert next(e["event"] for e in logs if e["logger"] == "bgworkers.scheduling") == (
        "broker_auth_refused"
    )
