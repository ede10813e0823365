from __future__ import annotations

import dramatiq
import pytest

from bgworkers import queues
from bgworkers.errors import PermanentError, TransientError
from bgworkers.middleware.retry_policy import decide_retry
from bgworkers.tasks import task
from tests.platform_helpers import captured_json_logs, running_worker, stub_broker


def test_permanent_errors_are_never_retried() -> None:
    decision = decide_retry(
        PermanentError("bad"),
        retries_so_far=0,
        max_retries=5,
        min_backoff_ms=10,
        max_backoff_ms=100,
    )
    assert (decision.retry, decision.reason) == (False, "permanent_error")


def test_actor_listed_errors_are_permanent_too() -> None:
    decision = decide_retry(
        KeyError("x"),
        retries_so_far=0,
        max_retries=5,
        min_backoff_ms=10,
        max_backoff_ms=100,
        permanent=(KeyError,),
    )
    assert decision.retry is False


def test_retries_stop_at_the_limit() -> None:
    kwargs = dict(max_retries=2, min_backoff_ms=10, max_backoff_ms=100)
    assert decide_retry(RuntimeError(), retries_so_far=1, **kwargs).retry is True
    exhausted = decide_retry(RuntimeError(), retries_so_far=2, **kwargs)
    assert (exhausted.retry, exhausted.reason) == (False, "retries_exhausted")


@pytest.mark.parametrize("attempt", range(8))
def test_backoff_grows_and_stays_under_the_cap(attempt: int) -> None:
    decision = decide_retry(
        RuntimeError(),
        retries_so_far=attempt,
        max_retries=10,
        min_backoff_ms=1_000,
        max_backoff_ms=20_000,
    )
    assert decision.retry
    assert 0 < decision.delay_ms <= 20_000
    assert decision.delay_ms <= 1_000 * 2 ** (attempt + 1)


def test_retry_after_is_honoured_and_capped() -> None:
    kwargs = dict(retries_so_far=0, max_retries=3, min_backoff_ms=10, max_backoff_ms=60_000)
    assert decide_retry(TransientError("429", retry_after_s=7), **kwargs).delay_ms == 7_000
    assert decide_retry(TransientError("429", retry_after_s=3600), **kwargs).delay_ms == 60_000


def _declare(broker: dramatiq.Broker, fn, **options):  # type: ignore[no-untyped-def]
    return task(
        queue=queues.MAINTENANCE, broker=broker, min_backoff_ms=10, max_backoff_ms=20, **options
    )(fn)


def test_failing_message_is_retried_then_dead_lettered(registry) -> None:
    broker = stub_broker()
    attempts: list[int] = []

    def flaky_job(n: int) -> None:
        attempts.append(n)
        raise RuntimeError("boom")

    actor = _declare(broker, flaky_job, max_retries=2)
    with captured_json_logs() as logs, running_worker(broker):
        actor.send(1)
        broker.join(queues.MAINTENANCE, fail_fast=False)
    assert attempts == [1, 1, 1]
    assert len(broker.dead_letters) == 1
    outcomes = [line["outcome"] for line in logs if line["event"] == "message_processed"]
    assert outcomes == ["retried", "retried", "dead_lettered"]
    final = next(line for line in logs if line.get("outcome") == "dead_lettered")
    assert final["reason"] == "retries_exhausted"
    assert final["retries"] == 2

    def value(name: str) -> float | None:
        return registry.get_sample_value(name, {"queue": "maintenance", "actor": "flaky_job"})

    # Three runs, once each: the waits in maintenance.DQ are not counted as runs.
    assert value("bgworkers_messages_processed_total") == 3
    assert value("bgworkers_messages_failed_total") == 3
    assert value("bgworkers_messages_retried_total") == 2
    assert value("bgworkers_messages_dead_lettered_total") == 1
    assert value("bgworkers_messages_in_progress") == 0
    assert value("bgworkers_message_duration_seconds_count") == 3


def test_permanent_error_is_dead_lettered_at_once_with_the_reason_logged(registry) -> None:
    broker = stub_broker()

    def rejects_input() -> None:
        raise PermanentError("reminder text is empty")

    actor = _declare(broker, rejects_input, max_retries=5)
    with captured_json_logs() as logs, running_worker(broker):
        actor.send()
        broker.join(queues.MAINTENANCE, fail_fast=False)
    assert len(broker.dead_letters) == 1
    [line] = [line for line in logs if line["event"] == "message_processed"]
    assert line["outcome"] == "dead_lettered"
    assert line["reason"] == "permanent_error"
    assert line["error"] == "reminder text is empty"
    assert (
        registry.get_sample_value(
            "bgworkers_messages_retried_total", {"queue": "maintenance", "actor": "rejects_input"}
        )
        == 0
    )


def test_invalid_arguments_are_dead_lettered_without_running_the_function(registry) -> None:
    broker = stub_broker()
    ran: list[int] = []

    def wants_an_int(user_id: int) -> None:
        ran.append(user_id)

    actor = _declare(broker, wants_an_int, max_retries=5)
    with captured_json_logs() as logs, running_worker(broker):
        actor.send("not a number")
        actor.send(1, 2)
        actor.send(user_id=7)
        broker.join(queues.MAINTENANCE, fail_fast=False)
    assert ran == [7]
    assert len(broker.dead_letters) == 2
    errors = sorted(line["error"] for line in logs if line.get("outcome") == "dead_lettered")
    assert errors[0].startswith("wants_an_int: too many positional arguments")
    assert errors[1].startswith("wants_an_int: user_id: Input should be a valid integer")


def test_retry_when_replaces_max_retries_as_in_dramatiq(registry) -> None:
    broker = stub_broker()
    attempts: list[int] = []

    def decides_itself() -> None:
        attempts.append(1)
        raise RuntimeError("again")

    actor = _declare(broker, decides_itself, max_retries=0, retry_when=lambda n, exc: n < 2)
    with running_worker(broker):
        actor.send()
        broker.join(queues.MAINTENANCE, fail_fast=False)
    assert len(attempts) == 3  # retry_when said yes after attempts 1 and 2
    assert len(broker.dead_letters) == 1


def test_throws_given_as_a_list_still_dead_letters_at_once() -> None:
    broker = stub_broker()
    attempts: list[int] = []

    def lookup() -> None:
        attempts.append(1)
        raise KeyError("missing")

    permanent = [KeyError]  # a list, where a tuple is expected
    actor = task(
        queue=queues.MAINTENANCE,
        broker=broker,
        min_backoff_ms=10,
        permanent_errors=permanent,  # type: ignore[arg-type]
    )(lookup)
    with running_worker(broker):
        actor.send()
        broker.join(queues.MAINTENANCE, fail_fast=False)
    assert attempts == [1]
    assert len(broker.dead_letters) == 1


def test_on_retry_exhausted_is_told_when_retries_run_out_but_not_for_permanent_errors() -> None:
    broker = stub_broker()
    told: list[tuple[str, int, int]] = []

    def record_exhaustion(message_data: dict, retry_info: dict) -> None:  # type: ignore[type-arg]
        told.append((message_data["actor_name"], retry_info["retries"], retry_info["max_retries"]))

    def keeps_failing() -> None:
        raise RuntimeError("down")

    def refuses() -> None:
        raise PermanentError("bad input")

    _declare(broker, record_exhaustion)
    failing = _declare(broker, keeps_failing, max_retries=1, on_retry_exhausted="record_exhaustion")
    permanent = _declare(broker, refuses, on_retry_exhausted="record_exhaustion")
    with running_worker(broker):
        failing.send()
        permanent.send()
        broker.join(queues.MAINTENANCE, fail_fast=False)
    assert told == [("keeps_failing", 1, 1)]
    assert len(broker.dead_letters) == 2
