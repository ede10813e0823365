from __future__ import annotations

import dramatiq

from bgworkers import queues
from bgworkers.errors import MessageTooLarge, PermanentError, TransientError
from bgworkers.middleware.retry_policy import requested_delay_ms
from bgworkers.tasks import task
from tests.platform_helpers import captured_json_logs, running_worker, stub_broker


def test_retry_after_is_honoured_and_capped() -> None:
    assert (
        requested_delay_ms(TransientError("429", retry_after_s=7), max_backoff_ms=60_000) == 7_000
    )
    capped = requested_delay_ms(TransientError("429", retry_after_s=3600), max_backoff_ms=60_000)
    assert capped == 60_000
    assert requested_delay_ms(dramatiq.Retry(delay=90_000), max_backoff_ms=60_000) == 60_000
    assert requested_delay_ms(TransientError("503"), max_backoff_ms=60_000) is None
    assert requested_delay_ms(RuntimeError(), max_backoff_ms=60_000) is None


def _retry_delays(broker: dramatiq.Broker, fn, **options) -> list[int]:  # type: ignore[no-untyped-def]
    """The delays of the retries of one message of ``fn`` (as logged), until dead-lettered."""
    actor = _declare(broker, fn, **options)
    with captured_json_logs() as logs, running_worker(broker):
        actor.send()
        broker.join(queues.MAINTENANCE, fail_fast=False)
    return [line["delay_ms"] for line in logs if line["event"] == "message_retry_scheduled"]


def test_backoff_grows_and_stays_under_the_cap() -> None:
    def fails() -> None:
        raise RuntimeError("down")

    delays = _retry_delays(stub_broker(), fails, max_retries=6, min_backoff_ms=1, max_backoff_ms=20)
    assert len(delays) == 6
    assert all(0 < delay <= min(20, 2 ** (attempt + 1)) for attempt, delay in enumerate(delays))


def test_retry_after_sets_the_delay_of_the_retry_up_to_the_cap() -> None:
    def rate_limited() -> None:
        raise TransientError("429", retry_after_s=0.007)

    assert _retry_delays(stub_broker(), rate_limited, max_retries=2) == [7, 7]

    def slows_down() -> None:
        raise TransientError("429", retry_after_s=3600)

    assert _retry_delays(stub_broker(), slows_down, max_retries=1) == [20]


def _declare(broker: dramatiq.Broker, fn, **options):  # type: ignore[no-untyped-def]
    options = {"min_backoff_ms": 10, "max_backoff_ms": 20} | options
    return task(queue=queues.MAINTENANCE, broker=broker, **options)(fn)


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


def test_a_retry_that_cannot_be_sent_is_dead_lettered_not_acked(registry) -> None:
    broker = stub_broker()
    send = broker.enqueue

    def refuse_retries(message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:  # type: ignore[type-arg]
        """The broker as it answers a retry grown over the size cap (the first send passes)."""
        if message.options.get("retries"):
            raise MessageTooLarge(actor_name=message.actor_name, size_bytes=2, max_bytes=1)
        return send(message, delay=delay)

    broker.enqueue = refuse_retries  # type: ignore[method-assign]

    def fails() -> None:
        raise RuntimeError("down")

    actor = _declare(broker, fails, max_retries=3)
    with captured_json_logs() as logs, running_worker(broker):
        actor.send()
        broker.join(queues.MAINTENANCE, fail_fast=False)
    assert len(broker.dead_letters) == 1
    [line] = [line for line in logs if line["event"] == "message_processed"]
    assert (line["outcome"], line["reason"]) == ("dead_lettered", "retry_not_sent")
    assert [line["event"] for line in logs if line["event"] == "message_retry_not_sent"] == [
        "message_retry_not_sent"
    ]
