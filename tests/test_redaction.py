from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgworkers.logs.redaction import (
    MAX_FIELD_CHARS,
    REDACTED,
    bound_text,
    redact_text,
    redact_value,
    scrub_known,
)
from tests.platform_helpers import captured_json_logs


def test_a_long_value_is_cut_with_its_size_before_redaction() -> None:
    text = "é" * 500_000  # 1,000,000 bytes in UTF-8
    cut = redact_text(text)
    assert cut.startswith("é" * MAX_FIELD_CHARS)
    assert cut.endswith("…(1000000 bytes)")
    assert bound_text("short") == "short"


def test_keep_end_keeps_the_tail() -> None:
    assert bound_text("a" * 100 + "tail!", 5, keep_end=True) == "…(105 bytes)tail!"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x=password=hunter2", f"x=password={REDACTED}"),
        ("'smtp_password': 'hunter2', 'a': 1", f"'smtp_password': '{REDACTED}', 'a': 1"),
        ("api-key: abc123 next", f"api-key: {REDACTED} next"),
        ("redis://:pw@host/0", f"redis://:{REDACTED}@host/0"),
        ("see https://u:p%2Fw@h/x and ok", f"see https://u:{REDACTED}@h/x and ok"),
        ("Authorization: Bearer abc.def", f"Authorization: Bearer {REDACTED}"),
        ("tokens_synced=5", f"tokens_synced={REDACTED}"),  # free text: a substring is enough
        ("user_id=5, status=ok", "user_id=5, status=ok"),
    ],
)
def test_patterns(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shape", ["a", "a-", "a://", "k=v ", "'x': ", "password=", "Bearer "])
def test_patterns_do_not_rescan_long_runs(shape: str) -> None:
    """The old patterns needed minutes for 200 KB of these (quadratic); linear ones, ms.

    No timing assertion: the test's own timeout is the generous deadline.
    """
    text = shape * (200_000 // len(shape))
    assert redact_text(text, limit=len(text))


def test_containers_are_bounded_in_items_and_depth() -> None:
    nested: object = "deep"
    for _ in range(10):
        nested = [nested]
    bounded = redact_value("ids", {"ids": list(range(1000)), "nested": nested})
    assert len(bounded["ids"]) == 51 and bounded["ids"][-1] == "…(950 more items)"
    assert "items)" in repr(bounded["nested"]) and "deep" not in repr(bounded["nested"])


def test_scrub_known_replaces_the_exact_values_in_use() -> None:
    reply = "535 5.7.8 Authentication failed for alice / Zm9vYmFy-secret-value"
    assert scrub_known(reply, ["Zm9vYmFy-secret-value", None, ""]) == (
        f"535 5.7.8 Authentication failed for alice / {REDACTED}"
    )
    assert scrub_known("a b c", ["a"]) == "a b c"  # too short to scrub from free text


def test_a_one_megabyte_log_field_becomes_a_bounded_line() -> None:
    with captured_json_logs() as logs:
        from bgworkers.logs.loggers import get_logger

        get_logger("bgworkers.test").info("big", arguments="x" * 1_000_000)
    [line] = [line for line in logs if line["event"] == "big"]
    assert len(line["arguments"]) < MAX_FIELD_CHARS + 50
    assert line["arguments"].endswith("…(1000000 bytes)")


_TRICKY = st.lists(
    st.sampled_from([*"ab:=@/?& 'x\"Bb", "password", "bearer ", "BASIC ", "://", "key="]),
    max_size=20,
).map("".join)


@settings(deadline=None)  # a loaded machine must not fail it: no timing here
@given(text=st.one_of(_TRICKY, st.text(max_size=60)))
def test_the_one_scan_shortcut_never_skips_what_a_pattern_would_redact(text: str) -> None:
    from bgworkers.logs.redaction import _redact_patterns

    assert redact_text(text) == _redact_patterns(bound_text(text))


def test_secret_keys_are_still_recognised_when_asked_again() -> None:
    from bgworkers.logs.redaction import is_secret_key

    for _ in range(3):  # cached after the first answer
        assert is_secret_key("smtp_password")
        assert not is_secret_key("user_id")
    assert redact_value("access_token", "abc") == REDACTED
