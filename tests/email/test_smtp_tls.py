"""The SMTP mailer's STARTTLS, SSL and login paths against a real aiosmtpd server."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from bgworkers.email.smtp import SmtpMailer, SmtpTransientError
from tests.email.helpers import ScriptedHandler
from tests.platform_helpers import free_port

# The implicit-TLS server is encrypted, though aiosmtpd does not see it and warns.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER, PASSWORD = "assistant", "s3cret"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: let the server reply 535


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture(params=["starttls", "ssl"])
def tls_server(
    request: pytest.FixtureRequest, certificate
) -> Iterator[tuple[str, int, ScriptedHandler]]:  # type: ignore[no-untyped-def]
    handler = ScriptedHandler()
    port = free_port()
    security: str = request.param
    # PLAIN only, so a refused login is one clear 535.
    options: dict[str, Any] = {
        "authenticator": authenticator,
        "auth_required": True,
        "auth_exclude_mechanism": ["LOGIN"],
    }
    if security == "starttls":
        options.update(tls_context=server_context(certificate), require_starttls=True)
    else:  # implicit TLS: aiosmtpd does not count it as TLS for AUTH, but it is
        options.update(ssl_context=server_context(certificate), auth_require_tls=False)
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    yield security, port, handler
    controller.stop()


def message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "assistant@example.com"
    msg["To"] = "ada@example.org"
    msg["Subject"] = "Over TLS"
    msg.set_content("Secret plans\n")
    return msg


def test_sends_over_tls_with_login(tls_server, certificate) -> None:  # type: ignore[no-untyped-def]
    security, port, handler = tls_server
    mailer = SmtpMailer(
        host="127.0.0.1",
        port=port,
        security=security,
        username=USER,
        password=PASSWORD,
        timeout_s=5,
        ssl_context=client_context(certificate),
    )
    mailer.send(message())
    [received] = handler.wait_for(1)
    assert received["Subject"] == "Over TLS"
    mailer.close()


def test_wrong_password_is_a_configuration_problem(tls_server, certificate) -> None:  # type: ignore[no-untyped-def]
    security, port, handler = tls_server
    mailer = SmtpMailer(
        host="127.0.0.1",
        port=port,
        security=security,
        username=USER,
        password="wrong",
        timeout_s=5,
        ssl_context=client_context(certificate),
    )
    with pytest.raises(SmtpTransientError) as caught:
        mailer.send(message())
    assert caught.value.code == 535
    assert handler.received == []


def test_untrusted_certificate_is_refused(tls_server) -> None:  # type: ignore[no-untyped-def]
    security, port, _ = tls_server
    mailer = SmtpMailer(host="127.0.0.1", port=port, security=security, timeout_s=5)
    with pytest.raises(SmtpTransientError, match="CERTIFICATE_VERIFY_FAILED"):
        mailer.send(message())
