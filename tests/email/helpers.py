"""Plain helpers of these tests (functions, classes, constants); fixtures stay in conftest."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bgworkers.email.batch import Draft, Sending
from bgworkers.email.models import OutboxEmail
from bgworkers.email.smtp import Mailer, SmtpMailer, SmtpTransientError


@dataclass
class ScriptedHandler:
    """Accepts mail, except for the replies queued in ``mail_replies``/``rcpt_replies``/
    ``data_replies``."""

    received: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    mail_replies: deque[str] = field(default_factory=deque)
    rcpt_replies: deque[str] = field(default_factory=deque)
    data_replies: deque[str] = field(default_factory=deque)
    #: A reply to RCPT for these addresses, every time they are tried.
    rcpt_by_address: dict[str, str] = field(default_factory=dict)
    connections: int = 0
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.mail_replies:
            return self.mail_replies.popleft()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.rcpt_by_address:
            return self.rcpt_by_address[address]
        if self.rcpt_replies:
            return self.rcpt_replies.popleft()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_replies:
            return self.data_replies.popleft()
        # The wire format ends lines with CRLF; compare bodies as Python text.
        message = message_from_bytes(
            envelope.content.replace(b"\r\n", b"\n"), policy=policy.default
        )
        assert isinstance(message, EmailMessage)
        with self.arrived:
            self.received.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.arrived.notify_all()
        return "250 2.0.0 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[EmailMessage]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout=timeout)
            return list(self.received)


@dataclass
class SmtpServer:
    handler: ScriptedHandler
    port: int
    mailers: list[SmtpMailer] = field(default_factory=list)

    def mailer(self) -> SmtpMailer:
        """A mailer for this server, closed when the test ends."""
        mailer = SmtpMailer(host="127.0.0.1", port=self.port, timeout_s=5)
        self.mailers.append(mailer)
        return mailer


NOW = datetime(2026, 11, 25, 7, 15, tzinfo=UTC)


def drafts(count: int, *, prefix: str = "page") -> list[Draft]:
    return [
        Draft(
            recipient=f"user{n}@example.org",
            subject=f"Hello {n}",
            text=f"Body {n}\n",
            key=f"{prefix}:{n}",
        )
        for n in range(count)
    ]


def sending(mailer: Mailer, max_attempts: int = 3) -> Sending:
    return Sending(
        mailer=mailer,
        sender="assistant@example.org",
        sending_timeout_s=600,
        max_attempts=max_attempts,
        clock=lambda: NOW,
    )


def statuses(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        rows = session.exec(select(OutboxEmail).order_by(col(OutboxEmail.id))).all()
        return {row.recipient: row.status for row in rows}


class PoisonedMailer:
    """Raises an unexpected error for one recipient, sends the others through ``inner``."""

    def __init__(self, inner: Mailer, poisoned: str) -> None:
        self.inner, self.poisoned = inner, poisoned

    def send(self, message: EmailMessage) -> None:
        if message["To"] == self.poisoned:
            raise RuntimeError("cannot encode this one")
        self.inner.send(message)

    def send_bytes(self, *, sender: str, recipients: list[str], data: bytes) -> None:
        if recipients == [self.poisoned]:
            raise RuntimeError("cannot encode this one")
        self.inner.send_bytes(sender=sender, recipients=recipients, data=data)

    def close(self) -> None:
        self.inner.close()


class DownMailer:
    """An SMTP server that does not answer: every send fails without a reply."""

    def __init__(self) -> None:
        self.calls = 0

    def send(self, message: EmailMessage) -> None:
        raise AssertionError("the wire form is used")

    def send_bytes(self, *, sender: str, recipients: list[str], data: bytes) -> None:
        self.calls += 1
        raise SmtpTransientError("ConnectionRefusedError: [Errno 111] Connection refused")

    def close(self) -> None:
        return None
