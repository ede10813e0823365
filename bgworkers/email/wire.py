"""An outbox email as the bytes SMTP carries, written directly for the common case.

Why: building an :class:`~email.message.EmailMessage` and flattening it costs about 2.4 ms of
CPU per email (header objects parsed on every assignment, then folded again), more than the
rest of a page's work per email. Our emails have one shape (a text part, an optional HTML
alternative, seven headers), so :func:`wire_bytes` writes that shape as a template: a few
microseconds. When a header value is not plain printable ASCII (a display name or subject
with accents, an internationalised address) or is too long for one line, it returns None and
the caller uses :func:`bgworkers.email.outbox.build_message`, which encodes and folds it.

Bodies: plain ASCII with short lines goes as ``7bit``; anything else as ``base64`` of UTF-8,
which every server and client reads.
"""

from __future__ import annotations

import base64
import uuid
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bgworkers.email.outbox import EmailContent

#: Characters of a header line we write unfolded (RFC 5322 says at most 998; 78 is advice).
MAX_HEADER_LINE = 900
#: Characters of a body line sent as 7bit (RFC 5321's line limit is 1000 with CRLF).
MAX_BODY_LINE = 998


def envelope_sender(sender: str) -> str:
    """The bare address of the ``From`` value (``Name <a@b>`` gives ``a@b``)."""
    return parseaddr(sender)[1] or sender


def wire_bytes(row: EmailContent, *, sender: str, message_id: str) -> bytes | None:
    """The email as CRLF-terminated bytes, or None when a header needs encoding."""
    headers = {
        "From": sender,
        "To": row.recipient,
        "Subject": row.subject,
        "Date": format_datetime(row.created_at),
        "Message-ID": message_id,
        "Auto-Submitted": "auto-generated",  # RFC 3834: no auto-replies to us
        "MIME-Version": "1.0",
    }
    lines = [f"{name}: {value}" for name, value in headers.items()]
    if not all(_plain_header(line) for line in lines):
        return None
    text = _part("plain", row.body_text)
    if row.body_html:
        boundary = f"=_{uuid.uuid4().hex}"
        lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        html = _part("html", row.body_html)
        body = f"\r\n--{boundary}\r\n{text}\r\n--{boundary}\r\n{html}\r\n--{boundary}--\r\n"
    else:
        body = text
    return ("\r\n".join(lines) + "\r\n" + body).encode("ascii")


def _plain_header(line: str) -> bool:
    return line.isascii() and line.isprintable() and len(line) <= MAX_HEADER_LINE


def _part(subtype: str, content: str) -> str:
    """A part's headers, blank line and body (no trailing CRLF after the body's last line)."""
    content = content.replace("\r\n", "\n").replace("\r", "\n")
    if not content.endswith("\n"):
        content += "\n"  # as EmailMessage.set_content does
    lines = content.split("\n")
    if content.isascii() and all(len(line) <= MAX_BODY_LINE for line in lines):
        encoding, body = "7bit", "\r\n".join(lines)
    else:
        encoded = base64.encodebytes(content.encode("utf-8")).decode("ascii")
        encoding, body = "base64", encoded.replace("\n", "\r\n").rstrip("\r\n")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n{body}"
    )
