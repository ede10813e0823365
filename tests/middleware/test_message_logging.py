from __future__ import annotations

import logging

from bgworkers import queues
from bgworkers.logs.loggers import bind_context, get_logger, redact_text
from bgworkers.tasks import task
from tests.platform_helpers import captured_json_logs, running_worker, stub_broker


def test_every_line_of_a_run_carries_the_message_context_and_one_canonical_line() -> None:
    broker = stub_broker()

    def chatty(user_id: int) -> None:
        get_logger("bgworkers.test").info("doing_work", user_id=user_id)
        logging.getLogger("some.library").warning("library says %s", "hello")

    actor = task(queue=queues.EMAIL, broker=broker)(chatty)
    with captured_json_logs() as logs, running_worker(broker):
        message = actor.send(42)
        broker.join(queues.EMAIL)
    work = [line for line in logs if line["event"] in {"doing_work", "library says hello"}]
    assert len(work) == 2
    for line in work:
        assert line["message_id"] == message.message_id
        assert line["actor"] == "chatty"
        assert line["queue"] == "email"
        assert line["retries"] == 0
    [canonical] = [line for line in logs if line["event"] == "message_processed"]
    assert canonical["outcome"] == "succeeded"
    assert canonical["message_id"] == message.message_id
    assert canonical["duration_s"] >= 0


def test_context_bound_by_one_message_does_not_leak_into_the_next() -> None:
    """One worker thread runs both messages: what the first bound must be gone for the second."""
    broker = stub_broker()

    def first_job() -> None:
        bind_context(customer="first-only")
        get_logger("bgworkers.test").info("in_first")

    def second_job() -> None:
        get_logger("bgworkers.test").info("in_second")

    first = task(queue=queues.EMAIL, broker=broker)(first_job)
    second = task(queue=queues.EMAIL, broker=broker)(second_job)
    with captured_json_logs() as logs, running_worker(broker, threads=1):
        first.send()
        broker.join(queues.EMAIL)
        second.send()
        broker.join(queues.EMAIL)
    by_event = {(line["event"], line.get("actor")): line for line in logs}
    assert by_event[("in_first", "first_job")]["customer"] == "first-only"
    assert by_event[("message_processed", "first_job")]["customer"] == "first-only"
    second_lines = [line for line in logs if line.get("actor") == "second_job"]
    assert {"in_second", "message_processed"} <= {line["event"] for line in second_lines}
    assert all("customer" not in line for line in second_lines)


def test_secrets_never_reach_the_output() -> None:
    with captured_json_logs() as logs:
        log = get_logger("bgworkers.test")
        log.info(
            "connecting",
            broker_url="amqp://app:s3cr3t-pw@rabbit:5672/",
            headers={"Authorization": "Bearer abc.def.ghi", "Accept": "json"},
            access_token="ya29.tokenvalue",
            smtp_password="hunter2",
        )
        logging.getLogger("pika").error("could not connect to amqp://u:topsecret@h/ password=x1")
        try:
            raise ValueError("refresh failed: refresh_token=1//0abcdef")
        except ValueError:
            log.exception("refresh_failed")
    text = repr(logs)
    for secret in (
        "s3cr3t-pw",
        "abc.def.ghi",
        "ya29.tokenvalue",
        "hunter2",
        "topsecret",
        "x1",
        "1//0abcdef",
    ):
        assert secret not in text, secret
    assert logs[0]["broker_url"] == "amqp://app:***@rabbit:5672/"
    assert logs[0]["headers"]["Accept"] == "json"


def test_secret_keys_are_whole_words_not_substrings() -> None:
    from bgworkers.logs.loggers import redact_value

    for secret in ("smtp_password", "access_token", "x-api-key", "Authorization", "cookie"):
        assert redact_value(secret, "value") == "***", secret
    for harmless in ("passed", "bypass", "tokens_synced", "keyboard"):
        assert redact_value(harmless, "value") == "value", harmless
    assert redact_text("GET /v1/x?key=AIzaSy123&alt=json") == "GET /v1/x?key=***&alt=json"


def test_redact_text_keeps_what_is_not_secret() -> None:
    assert redact_text("GET https://example.org/a?b=1 200") == "GET https://example.org/a?b=1 200"
    assert redact_text("postgresql+psycopg://bg:pw@db/x") == "postgresql+psycopg://bg:***@db/x"
