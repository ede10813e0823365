import smtplib
import socket
from email.message import EmailMessage

import pytest

from bgworkers.email.smtp import (
    ConsoleMailer,
    SmtpMailer,
    SmtpPermanentError,
    SmtpTransientError,
    build_mailer,
    classify,
)
from bgworkers.errors import PermanentError, TransientError
from bgworkers.settings import load_settings
from tests.platform_helpers import captured_json_logs


def message(to: str = "ada@example.org") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "assistant@example.com"
    msg["To"] = to
    msg["Subject"] = "Hello"
    msg.set_content("Body\n")
    return msg


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (smtplib.SMTPDataError(550, b"5.7.1 rejected"), SmtpPermanentError, 550),
        (smtplib.SMTPDataError(452, b"4.3.1 full"), SmtpTransientError, 452),
        # A refused sender is our configuration (the sender is ours), not this email.
        (smtplib.SMTPSenderRefused(553, b"bad sender", "x@y"), SmtpTransientError, 553),
        (
            smtplib.SMTPSenderRefused(530, b"5.7.0 Must issue a STARTTLS command first", "x@y"),
            SmtpTransientError,
            530,
        ),
        (
            smtplib.SMTPRecipientsRefused({"a@b.c": (530, b"Auth required")}),
            SmtpTransientError,
            530,
        ),
        (smtplib.SMTPDataError(535, b"5.7.8 Authentication failed"), SmtpTransientError, 535),
        (smtplib.SMTPDataError(554, b"5.7.0 Authentication required"), SmtpTransientError, 554),
        (smtplib.SMTPDataError(554, b"5.7.1 Relay access denied"), SmtpPermanentError, 554),
        (
            smtplib.SMTPRecipientsRefused({"a@b.c": (550, b"5.1.1 no such user")}),
            SmtpPermanentError,
            550,
        ),
        (smtplib.SMTPRecipientsRefused({"a@b.c": (450, b"greylisted")}), SmtpTransientError, 450),
        (smtplib.SMTPConnectError(554, b"go away"), SmtpTransientError, 554),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), SmtpTransientError, 535),
        (smtplib.SMTPServerDisconnected("gone"), SmtpTransientError, None),
        (ConnectionRefusedError(111, "refused"), SmtpTransientError, None),
        (TimeoutError("timed out"), SmtpTransientError, None),
    ],
)
def test_classify(error: Exception, kind: type, code: int | None) -> None:
    result = classify(error)
    assert isinstance(result, kind)
    assert result.code == code
    assert isinstance(result, TransientError if kind is SmtpTransientError else PermanentError)


def test_classify_keeps_the_reply() -> None:
    result = classify(smtplib.SMTPDataError(550, b"5.7.1 Message rejected as spam"))
    assert result.reply == "550 5.7.1 Message rejected as spam"


def test_sends_and_reuses_the_connection(smtp_server) -> None:
    mailer = smtp_server.mailer()
    mailer.send(message("one@example.org"))
    mailer.send(message("two@example.org"))
    received = smtp_server.handler.wait_for(2)
    assert [m["To"] for m in received] == ["one@example.org", "two@example.org"]
    assert smtp_server.handler.connections == 1
    mailer.close()
    mailer.send(message("three@example.org"))  # reconnects after close
    assert smtp_server.handler.connections == 2
    mailer.close()


def test_rejections_are_classified(smtp_server) -> None:
    mailer = smtp_server.mailer()
    smtp_server.handler.rcpt_replies.append("550 5.1.1 No such user here")
    with pytest.raises(SmtpPermanentError) as permanent:
        mailer.send(message())
    assert permanent.value.reply == "550 5.1.1 No such user here"
    smtp_server.handler.data_replies.append("421 4.3.2 Service shutting down")
    with pytest.raises(SmtpTransientError) as transient:
        mailer.send(message())
    assert transient.value.code == 421
    mailer.send(message())  # and then it works
    assert len(smtp_server.handler.wait_for(1)) == 1
    mailer.close()


def test_sender_refused_for_authentication_is_transient(smtp_server) -> None:
    mailer = smtp_server.mailer()
    smtp_server.handler.mail_replies.extend(
        ["530 5.7.0 Must issue a STARTTLS command first", "530 Authentication required"]
    )
    for reply in ("530 5.7.0 Must issue a STARTTLS command first", "530 Authentication required"):
        with pytest.raises(SmtpTransientError) as transient:
            mailer.send(message())
        assert transient.value.reply == reply
    mailer.send(message())  # once the server accepts the sender
    assert len(smtp_server.handler.wait_for(1)) == 1
    mailer.close()


def test_unreachable_server_is_transient() -> None:
    with socket.socket() as probe:  # a port that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailer = SmtpMailer(host="127.0.0.1", port=port, timeout_s=2)
    with pytest.raises(SmtpTransientError, match="ConnectionRefusedError"):
        mailer.send(message())


def test_console_mailer_logs_instead_of_sending() -> None:
    with captured_json_logs() as logs:
        ConsoleMailer().send(message())
    [entry] = [line for line in logs if line["event"] == "email_logged"]
    assert entry["to"] == "ada@example.org"
    assert entry["text"] == "Body\n"


def test_backend_is_chosen_by_configuration() -> None:
    assert isinstance(build_mailer(load_settings(email_backend="console")), ConsoleMailer)
    smtp = build_mailer(
        load_settings(smtp_host="mail.example.org", smtp_port=587, smtp_security="starttls")
    )
    assert isinstance(smtp, SmtpMailer)
    assert (smtp.host, smtp.port, smtp.security) == ("mail.example.org", 587, "starttls")


def test_close_at_shutdown_does_not_wait_for_a_send_in_progress() -> None:
    """A worker's shutdown closes the mailer while a thread may still be sending a long email:
    close() must return without waiting behind that send (it bounded nothing before)."""
    import asyncio
    import threading
    from typing import Any

    from aiosmtpd.controller import Controller

    from tests.platform_helpers import free_port

    in_data, release = threading.Event(), threading.Event()

    class SlowData:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            in_data.set()
            while not release.is_set():
                await asyncio.sleep(0.05)
            return "250 OK"

    port = free_port()
    controller = Controller(SlowData(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailer = SmtpMailer(host="127.0.0.1", port=port, timeout_s=30)
        release.set()
        mailer.send(message())  # warms a connection on this thread, now idle
        release.clear()
        in_data.clear()
        sender = threading.Thread(target=mailer.send, args=(message(),))
        sender.start()
        assert in_data.wait(10)
        mailer.close()  # returns while the other thread's DATA is still unanswered
        assert sender.is_alive()
        release.set()
        sender.join(10)
        assert not sender.is_alive()
    finally:
        release.set()
        controller.stop()
