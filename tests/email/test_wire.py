"""The wire form of an email reads back as the message the slow path builds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from bgworkers.email.outbox import build_message, is_email_address, message_id_for
from bgworkers.email.wire import envelope_sender, wire_bytes


@dataclass
class Row:
    recipient: str = "ada@example.org"
    subject: str = "Your day: Wednesday 25 November"
    body_text: str = "Good morning Ada,\n\n.a line with a dot\n"
    body_html: str | None = "<p>Good morning</p>\n"
    idempotency_key: str = "daily-summary:1:2026-11-25"
    created_at: datetime = datetime(2026, 11, 25, 7, 15, tzinfo=UTC)


SENDER = "Assistant <assistant@example.org>"


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.parametrize(
    "row",
    [
        Row(),
        Row(body_html=None),
        Row(body_text="No newline at the end", body_html="<p>none either</p>"),
        Row(body_text="Grüße, Zoë — café\n" + "x" * 1200 + "\n"),  # not 7bit: base64
    ],
)
def test_the_wire_form_reads_back_as_the_built_message(row: Row) -> None:
    message_id = message_id_for(row.idempotency_key, SENDER)
    data = wire_bytes(row, sender=SENDER, message_id=message_id)
    assert data is not None and b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    wire, built = parsed(data), build_message(row, sender=SENDER)
    for header in ("From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted"):
        assert wire[header] == built[header]
    for kind in ("plain", "html"):
        wire_part, built_part = wire.get_body((kind,)), built.get_body((kind,))
        if built_part is None:
            assert wire_part is None or kind == "plain"
            continue
        assert wire_part is not None
        assert wire_part.get_content().replace("\r\n", "\n") == built_part.get_content()


@pytest.mark.parametrize(
    ("field", "value"),
    [("subject", "Café à 10 h"), ("recipient", "zoë@example.org"), ("subject", "x" * 950)],
)
def test_headers_that_need_encoding_take_the_slow_path(field: str, value: str) -> None:
    row = Row(**{field: value})
    assert wire_bytes(row, sender=SENDER, message_id="<x@example.org>") is None
    assert wire_bytes(Row(), sender="Zoë <z@example.org>", message_id="<x@y>") is None


def test_the_envelope_sender_is_the_bare_address() -> None:
    assert envelope_sender(SENDER) == "assistant@example.org"
    assert envelope_sender("assistant@localhost") == "assistant@localhost"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ada@example.org", True),
        ("o'neil+tag@sub-domain.example", True),
        ("a@[192.0.2.1]", True),  # not plain: the parser decides
        ("zoë@example.org", False),
        ("a..b@example.org", False),
        ("a@x..y", False),  # the parser raised HeaderParseError here
        ("Ada <ada@example.org>", False),
        ("broken", False),
    ],
)
def test_plain_addresses_skip_the_parser_and_agree_with_it(text: str, expected: bool) -> None:
    assert is_email_address(text) is expected
