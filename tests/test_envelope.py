"""The envelope check on its own: what it accepts, and a reason for everything it refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from hypothesis import given, settings
from hypothesis import strategies as st

from bgworkers import queues
from bgworkers.brokers.envelope import InvalidEnvelope, decode_envelope
from bgworkers.tasks import task

QUEUE = queues.EMAIL
MAX_BYTES = 1_048_576


@pytest.fixture(scope="module")
def actors() -> dict[str, Any]:
    broker = StubBroker()

    def deliver(email_id: int) -> None:
        pass

    def on_files() -> None:
        pass

    task(queue=QUEUE, broker=broker)(deliver)
    task(queue=queues.FILES, broker=broker)(on_files)
    return broker.actors


def envelope(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "queue_name": QUEUE,
        "actor_name": "deliver",
        "args": [7],
        "kwargs": {},
        "options": {},
        "message_id": "3f1c6d3e-2b5c-4a57-9a0e-1d2f3a4b5c6d",
        "message_timestamp": 1_764_000_000_000,
    }
    fields.update(changes)
    return fields


def options(**values: Any) -> dict[str, Any]:
    return envelope(options=values)


def decode(body: bytes, actors: dict[str, Any], queue_name: str = QUEUE) -> Any:
    return decode_envelope(body, queue_name=queue_name, actors=actors, max_bytes=MAX_BYTES)


def encoded(fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_valid_envelope_becomes_the_message(actors: dict[str, Any]) -> None:
    message = decode(encoded(options(retries=2, max_retries=3, time_limit=1000)), actors)
    assert (message.actor_name, message.args, message.options["retries"]) == ("deliver", (7,), 2)


def test_a_retry_on_the_delay_queue_carries_an_eta(actors: dict[str, Any]) -> None:
    body = encoded(envelope(queue_name=f"{QUEUE}.DQ", options={"eta": 1_764_000_000_000}))
    assert decode(body, actors, queue_name=f"{QUEUE}.DQ").options["eta"] == 1_764_000_000_000


BAD: list[tuple[str, bytes, str]] = [
    ("too_large", encoded(envelope(args=["x" * MAX_BYTES])), "too_large"),
    ("not_utf8", b'{"a": "\xff"}', "not_utf8"),
    ("not_json", b"{not json", "not_json"),
    ("nan", encoded(envelope(args=[float("nan")])), "not_json"),
    ("huge_int", b'{"args": [' + b"9" * 5000 + b"]}", "not_json"),
    ("deep_json", b"[" * 100_000 + b"]" * 100_000, "not_json"),
    ("array", b"[1, 2]", "not_an_object"),
    ("missing_field", encoded({k: v for k, v in envelope().items() if k != "kwargs"}), "bad_field"),
    ("extra_field", encoded(envelope(surprise=1)), "bad_field"),
    ("options_not_object", encoded(envelope(options=5)), "bad_field"),
    ("args_not_list", encoded(envelope(args={"a": 1})), "bad_field"),
    ("kwargs_not_object", encoded(envelope(kwargs=[1])), "bad_field"),
    ("actor_not_str", encoded(envelope(actor_name=["deliver"])), "bad_field"),
    ("message_id_not_str", encoded(envelope(message_id=5)), "bad_field"),
    ("message_id_long", encoded(envelope(message_id="a" * 65)), "bad_field"),
    ("message_id_newline", encoded(envelope(message_id="a\nb")), "bad_field"),
    ("timestamp_str", encoded(envelope(message_timestamp="now")), "bad_field"),
    ("timestamp_bool", encoded(envelope(message_timestamp=True)), "bad_field"),
    ("lone_surrogate", b'{"args": ["\\ud800"]}', "bad_field"),
    ("deep_values", encoded(envelope(args=[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]])), "too_deep"),
    ("other_queue", encoded(envelope(queue_name="files")), "wrong_queue"),
    ("no_such_queue", encoded(envelope(queue_name="nowhere")), "wrong_queue"),
    ("actor_of_other_queue", encoded(envelope(actor_name="on_files")), "wrong_queue"),
    ("unknown_actor", encoded(envelope(actor_name="nope")), "unknown_actor"),
    ("throws", encoded(options(throws="ValueError")), "bad_option"),
    ("retry_when", encoded(options(retry_when=1)), "bad_option"),
    ("retries_negative", encoded(options(retries=-1)), "bad_option"),
    ("retries_str", encoded(options(retries="abc")), "bad_option"),
    ("retries_bool", encoded(options(retries=True)), "bad_option"),
    ("retries_float", encoded(options(retries=1.5)), "bad_option"),
    ("max_retries_huge", encoded(options(max_retries=10**9)), "bad_option"),
    ("backoff_week", encoded(options(max_backoff=7 * 86_400_000)), "bad_option"),
    ("time_limit_zero", encoded(options(time_limit=0)), "bad_option"),
    ("eta_on_canonical_queue", encoded(options(eta=1)), "bad_option"),
    ("priority", encoded(options(broker_priority="high")), "bad_option"),
    ("tick_naive", encoded(options(bgw_tick="2026-12-01T10:00:00")), "bad_option"),
    ("tick_garbage", encoded(options(scheduled_at="yesterday")), "bad_option"),
    ("on_success_unknown", encoded(options(on_success="nope")), "bad_option"),
    ("pipe_target_bad", encoded(options(pipe_target=envelope(queue_name="nowhere"))), "bad_option"),
]


@pytest.mark.parametrize(("body", "code"), [(b, c) for _, b, c in BAD], ids=[n for n, _, _ in BAD])
def test_every_bad_envelope_is_refused_with_a_reason(
    actors: dict[str, Any], body: bytes, code: str
) -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        decode(body, actors)
    assert caught.value.code == code
    assert caught.value.code in InvalidEnvelope.CODES
    assert len(str(caught.value)) < 300  # a short line, never the body


def test_the_refusal_names_the_message_id_and_actor_when_usable(actors: dict[str, Any]) -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        decode(encoded(options(retries=-1)), actors)
    assert caught.value.message_id == envelope()["message_id"]
    assert caught.value.actor == "deliver"
    with pytest.raises(InvalidEnvelope) as caught:
        decode(encoded(envelope(actor_name="nope", message_id=["x"])), actors)
    assert (caught.value.message_id, caught.value.actor) == (None, None)


def test_a_valid_pipe_target_is_accepted(actors: dict[str, Any]) -> None:
    target = envelope(actor_name="on_files", queue_name=queues.FILES, args=[])
    assert decode(encoded(options(pipe_target=target)), actors).options["pipe_target"] == target


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=40,
)


@settings(deadline=None)  # a loaded machine must not fail it: no timing here
@given(fields=st.dictionaries(st.sampled_from(["args", "kwargs", "options", "x"]), _JSON))
def test_the_flat_shortcut_only_skips_envelopes_the_full_walk_accepts(
    fields: dict[str, Any],
) -> None:
    from bgworkers.brokers.envelope import _check_nesting_and_text, _plainly_shallow

    if _plainly_shallow(fields):
        _check_nesting_and_text(fields)  # must not raise


def test_a_lone_surrogate_in_a_flat_envelope_is_still_refused(actors: dict[str, Any]) -> None:
    body = encoded(envelope(args=["\ud800"]))  # JSON spells it \ud800: ASCII on the wire
    assert body.isascii()
    with pytest.raises(InvalidEnvelope) as refused:
        decode(body, actors)
    assert "surrogate" in refused.value.detail
