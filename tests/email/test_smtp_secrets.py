"""Canary password: an SMTP server whose 535 refusal echoes the credentials it was sent."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from bgworkers.email.smtp import SmtpMailer, SmtpTransientError
from bgworkers.logs.loggers import get_logger
from tests.email.helpers import ScriptedHandler
from tests.platform_helpers import captured_json_logs, free_port

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
USER = "mailer"
CANARY = "canary-Pw-7f3a9c1e"


def echoing_authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    """Refuses every login, quoting the password and the raw AUTH PLAIN blob back."""
    password = data.password.decode() if hasattr(data, "password") else "?"
    blob = base64.b64encode(f"\0{USER}\0{password}".encode()).decode()
    return AuthResult(
        success=False,
        handled=False,
        message=f"535 5.7.8 Authentication failed for {USER}:{password} ({blob})",
    )


@pytest.fixture
def echoing_server() -> Iterator[int]:
    port = free_port()
    controller = Controller(
        ScriptedHandler(),
        hostname="127.0.0.1",
        port=port,
        authenticator=echoing_authenticator,
        auth_required=True,
        auth_require_tls=False,
        auth_exclude_mechanism=["LOGIN"],
    )
    controller.start()
    yield port
    controller.stop()


def message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "assistant@example.com"
    msg["To"] = "ada@example.org"
    msg["Subject"] = "Hi"
    msg.set_content("Body\n")
    return msg


def test_a_refusal_echoing_the_password_never_carries_it(echoing_server: int) -> None:
    mailer = SmtpMailer(
        host="127.0.0.1", port=echoing_server, username=USER, password=CANARY, timeout_s=5
    )
    blob = base64.b64encode(f"\0{USER}\0{CANARY}".encode()).decode()
    with captured_json_logs() as logs, pytest.raises(SmtpTransientError) as caught:
        try:
            mailer.send(message())
        except SmtpTransientError:
            get_logger("bgworkers.test").exception("email_send_failed")
            raise
    error = caught.value
    ours = [line for line in logs if not line.get("logger", "").startswith("mail.")]  # not the fake
    assert any(line["event"] == "email_send_failed" for line in ours)
    assert error.code == 535 and "Authentication failed" in error.reply
    for secret in (CANARY, blob):
        assert secret not in str(error) and secret not in error.reply
        assert secret not in repr(ours)
    assert error.__cause__ is None and error.__suppress_context__
    mailer.close()
