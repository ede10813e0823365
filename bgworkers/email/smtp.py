"""Mailers: the small interface the outbox sends through, with SMTP and console versions.

Exceptions (what the outbox does with them)::

    SmtpTransientError (TransientError)   connection errors, timeouts, 4xx replies,
                                          server/configuration refusals (banner, HELO, AUTH,
                                          any refusal of MAIL FROM, 530/535 and
                                          5.7.0/5.7.8/5.7.9/5.7.11 authentication replies)
    SmtpPermanentError (PermanentError)   another 5xx reply to this email (RCPT, DATA)

Why a 5xx at connect, HELO, AUTH or MAIL FROM is transient: the sender is ours, so its
refusal (``530 5.7.0 Must issue STARTTLS``, ``530 Authentication required``) says the server or
our configuration is wrong, not this email; failing every queued email for it would lose
them. The outbox still gives up on an email after ``email_max_attempts`` attempts.

:class:`SmtpMailer` keeps one connection per worker thread and reuses it (checked with a
NOOP first unless used within :data:`TRUSTED_IDLE_S`), because opening a connection, TLS
and login per email costs more than the email itself. The mailer is a shared resource of
the process: :func:`get_mailer` builds it once from the settings; :func:`use_mailer`
replaces it (tests point it at their server).
"""

from __future__ import annotations

import base64
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Protocol

from bgworkers.errors import PermanentError, TransientError
from bgworkers.logs.loggers import get_logger
from bgworkers.logs.redaction import scrub_known
from bgworkers.processes.process_resources import ProcessResource
from bgworkers.settings import Settings
from bgworkers.tracing.spans import client_span

log = get_logger(__name__)


class SmtpTransientError(TransientError):
    """Worth retrying later; ``code`` is the SMTP reply code, None for connection errors."""

    def __init__(self, reply: str, *, code: int | None = None) -> None:
        super().__init__(reply)
        self.code = code
        self.reply = reply


class SmtpPermanentError(PermanentError):
    """The server refused this email for good (5xx); ``reply`` is what it said."""

    def __init__(self, reply: str, *, code: int) -> None:
        super().__init__(reply)
        self.code = code
        self.reply = reply


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` to the addresses in its headers or raise one of the errors above."""

    def send_bytes(self, *, sender: str, recipients: list[str], data: bytes) -> None:
        """Deliver a message already in wire form (CRLF lines) from ``sender`` (the envelope's
        address) to ``recipients``, or raise one of the errors above."""

    def close(self) -> None:
        """Release connections (at worker shutdown)."""


#: Characters kept of a server's reply (it goes into exceptions, logs and ``last_error``).
MAX_REPLY_CHARS = 500


def _reply(code: int, text: bytes | str, secrets: Iterable[str] = ()) -> str:
    decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return scrub_known(f"{code} {decoded}".strip()[: MAX_REPLY_CHARS * 4], secrets)[
        :MAX_REPLY_CHARS
    ]


#: Replies that mean "authenticate (or encrypt) first": our configuration, not the email.
_AUTH_CODES = frozenset({530, 535})
_AUTH_STATUSES = ("5.7.0", "5.7.8", "5.7.9", "5.7.11")


def classify(
    exc: Exception, *, secrets: Iterable[str] = ()
) -> SmtpTransientError | SmtpPermanentError:
    """Map an :mod:`smtplib` or socket error to a transient or permanent error.

    ``secrets``: the credential values in use, scrubbed out of the reply (a server may echo
    what it was sent, e.g. in a 535 refusal).
    """
    code: int
    text: bytes | str
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()))
    elif isinstance(
        exc,
        smtplib.SMTPConnectError
        | smtplib.SMTPHeloError
        | smtplib.SMTPAuthenticationError
        | smtplib.SMTPSenderRefused,
    ):
        reply = _reply(exc.smtp_code, exc.smtp_error, secrets)
        return SmtpTransientError(reply, code=exc.smtp_code)
    elif isinstance(exc, smtplib.SMTPResponseException):
        code, text = exc.smtp_code, exc.smtp_error
    else:
        detail = scrub_known(str(exc), secrets)[:MAX_REPLY_CHARS]
        return SmtpTransientError(f"{type(exc).__name__}: {detail}")
    reply = _reply(code, text, secrets)
    if 500 <= code <= 599 and not _is_auth_refusal(code, reply):
        return SmtpPermanentError(reply, code=code)
    return SmtpTransientError(reply, code=code)


def _is_auth_refusal(code: int, reply: str) -> bool:
    words = reply.split()
    status = words[1] if len(words) > 1 else ""
    return code in _AUTH_CODES or status in _AUTH_STATUSES


#: Seconds a connection may have been idle and still be used without a NOOP first: servers
#: close idle connections after minutes (RFC 5321 asks for at least 5), so one used a moment
#: ago is open, and a NOOP per email was a round trip per email.
TRUSTED_IDLE_S = 2.0

#: Seconds a QUIT may take at shutdown before the connection is simply closed.
QUIT_TIMEOUT_S = 2.0


class SmtpMailer:
    """Sends over SMTP; ``security`` is ``none``, ``starttls`` or ``ssl``; timeout in seconds."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self.timeout_s = timeout_s
        self._ssl_context = ssl_context
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[smtplib.SMTP] = set()
        self._busy: set[smtplib.SMTP] = set()

    def send(self, message: EmailMessage) -> None:
        recipients = sum(len(message.get_all(h, [])) for h in ("To", "Cc", "Bcc"))
        with client_span("smtp send", self._span_attributes(recipients)):
            self._deliver(lambda connection: connection.send_message(message))

    def send_bytes(self, *, sender: str, recipients: list[str], data: bytes) -> None:
        with client_span("smtp send", self._span_attributes(len(recipients))):
            self._deliver(lambda connection: connection.sendmail(sender, recipients, data))

    def _span_attributes(self, recipients: int) -> dict[str, object]:
        # The peer and how many recipients, never who they are.
        return {
            "server.address": self.host,
            "server.port": self.port,
            "network.protocol.name": "smtp",
            "bgworkers.smtp.security": self.security,
            "bgworkers.smtp.recipient_headers": recipients,
        }

    def _deliver(self, talk: Callable[[smtplib.SMTP], object]) -> None:
        try:
            try:
                self._talk(talk)
            except smtplib.SMTPServerDisconnected:
                # A connection reused without a NOOP (used a moment ago) that the server
                # has closed since: once more on a new one, as the NOOP check would have.
                self._discard()
                self._talk(talk)
        except (smtplib.SMTPException, OSError) as exc:
            self._discard()
            # from None: the original exception holds the server's unscrubbed reply.
            raise classify(exc, secrets=self._secrets()) from None

    def _talk(self, talk: Callable[[smtplib.SMTP], object]) -> None:
        connection = self._connection()
        with self._lock:
            self._busy.add(connection)
        try:
            talk(connection)
        finally:
            with self._lock:
                self._busy.discard(connection)

    def _secrets(self) -> list[str]:
        """The password as sent: itself, and base64 for AUTH LOGIN and AUTH PLAIN."""
        if not self._password:
            return []
        plain = f"\0{self.username or ''}\0{self._password}".encode()
        return [
            self._password,
            base64.b64encode(self._password.encode()).decode(),
            base64.b64encode(plain).decode(),
        ]

    def close(self) -> None:
        """Say QUIT on idle connections, each bounded by :data:`QUIT_TIMEOUT_S`.

        Why not the busy ones: a QUIT on a connection a worker thread is still sending on
        waits behind that send (up to ``timeout_s`` per reply), which made a worker's
        shutdown outlast ``--worker-shutdown-timeout`` by the length of the send. They are
        left to their thread, and to the process's exit; the outbox's claim tells a later
        sweep whether that email still has to go.
        """
        with self._lock:
            idle = self._open - self._busy
            self._open = self._open & self._busy
        for connection in idle:
            if connection.sock is not None:
                connection.sock.settimeout(QUIT_TIMEOUT_S)
            _quit(connection)

    def _connection(self) -> smtplib.SMTP:
        connection: smtplib.SMTP | None = getattr(self._local, "connection", None)
        if connection is not None:
            recent = time.monotonic() - self._local.used_at < TRUSTED_IDLE_S
            if recent and connection.sock is not None:  # None: closed (by close(), say)
                self._local.used_at = time.monotonic()
                return connection
            try:
                if connection.noop()[0] == 250:
                    self._local.used_at = time.monotonic()
                    return connection
            except (smtplib.SMTPException, OSError):
                pass  # the server closed an idle connection: open a new one below
            self._discard()
        connection = self._connect()
        self._local.connection = connection
        self._local.used_at = time.monotonic()
        with self._lock:
            self._open.add(connection)
        return connection

    def _connect(self) -> smtplib.SMTP:
        context = self._ssl_context or ssl.create_default_context()
        connection: smtplib.SMTP
        if self.security == "ssl":
            connection = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout_s, context=context
            )
        else:
            connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        try:
            connection.ehlo()
            if self.security == "starttls":
                connection.starttls(context=context)
                connection.ehlo()
            if self.username:
                connection.login(self.username, self._password or "")
        except BaseException:  # even an interrupt: no half-open socket left behind
            connection.close()
            raise
        return connection

    def _discard(self) -> None:
        connection: smtplib.SMTP | None = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            with self._lock:
                self._open.discard(connection)
            _quit(connection)


def _quit(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        connection.close()


class ConsoleMailer:
    """Writes each email to the log instead of sending it (development, demos)."""

    def send(self, message: EmailMessage) -> None:
        body = message.get_body(("plain",))
        log.info(
            "email_logged",
            to=message["To"],
            subject=message["Subject"],
            message_id=message["Message-ID"],
            text=body.get_content() if body is not None else "",
        )

    def send_bytes(self, *, sender: str, recipients: list[str], data: bytes) -> None:
        message = message_from_bytes(data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.send(message)

    def close(self) -> None:
        return None


def build_mailer(settings: Settings) -> Mailer:
    """The mailer chosen by ``BGW_EMAIL_BACKEND``."""
    if settings.email_backend == "console":
        return ConsoleMailer()
    password = settings.smtp_password
    return SmtpMailer(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=password.get_secret_value() if password is not None else None,
        timeout_s=settings.smtp_timeout_s,
    )


_MAILER: ProcessResource[Mailer] = ProcessResource("smtp_mailer", close=lambda m: m.close())


def get_mailer(settings: Settings) -> Mailer:
    """This process's mailer, built on first use."""
    return _MAILER.get(lambda: build_mailer(settings))


def use_mailer(mailer: Mailer | None) -> None:
    """Replace this process's mailer (None: build it from the settings on next use)."""
    previous = _MAILER.replace(mailer)
    if previous is not None and previous is not mailer:
        previous.close()
