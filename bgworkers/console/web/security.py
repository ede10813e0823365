"""Who may use the web console, and the protections every page and form gets.

What they are (credentials, CSRF tokens, the session cookie, security headers) is listed in
docs/console.md ("Security"); here, why they are built so. Every credential comparison is
:func:`hmac.compare_digest` over the UTF-8 bytes, so the time taken does not tell how much of
a guess was right. The cookie's signing key is derived from the session secret *and* the
credentials (:func:`session_key`): changing ``BGW_CONSOLE_PASSWORD``, ``BGW_CONSOLE_TOKEN`` or
``BGW_CONSOLE_SESSION_SECRET`` (and restarting the console) revokes every session signed
before, so a leaked password or cookie is dealt with by changing it. Without credentials the
console starts only with ``--no-auth`` on a loopback address (:func:`check_startup`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bgworkers.errors import ConfigurationError
from bgworkers.settings import Settings

CSRF_FIELD = "csrf"
SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class Credentials:
    """What the login form accepts; all None means no authentication (``--no-auth``)."""

    token: str | None = None
    user: str | None = None
    password: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.token) or bool(self.user and self.password)

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        token = settings.console_token.get_secret_value() if settings.console_token else None
        password = (
            settings.console_password.get_secret_value() if settings.console_password else None
        )
        return cls(
            token=token or None, user=settings.console_user or None, password=password or None
        )

    def check(self, *, user: str, password: str, token: str) -> str | None:
        """The audited name of whoever these form values log in, or None.

        Both comparisons always run, so a failed login takes as long whichever field was wrong.
        """
        token_ok = _same(token, self.token) if self.token else False
        user_ok = _same(user, self.user) if self.user and self.password else False
        password_ok = _same(password, self.password) if self.user and self.password else False
        if self.user and user_ok and password_ok:
            return f"web:{self.user}"
        if token and token_ok:
            return "web:token"
        return None


def session_key(secret: str, credentials: Credentials) -> str:
    """The cookie signing key: ``secret`` bound to the credentials in force."""
    parts = ("bgw-console-session", credentials.user, credentials.password, credentials.token)
    bound = "\0".join(part or "" for part in parts)
    return hmac.new(secret.encode(), bound.encode(), hashlib.sha256).hexdigest()


def _same(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_startup(credentials: Credentials, *, host: str, no_auth: bool) -> None:
    """Raise :class:`ConfigurationError` unless it is safe to serve on ``host``."""
    if no_auth:
        if not is_loopback(host):
            raise ConfigurationError(
                f"--no-auth is only allowed on a loopback address (127.0.0.1, ::1, localhost), "
                f"not {host!r}"
            )
        return
    if not credentials.configured:
        raise ConfigurationError(
            "the console needs credentials: set BGW_CONSOLE_TOKEN, or BGW_CONSOLE_USER and "
            "BGW_CONSOLE_PASSWORD (or start it with --no-auth on 127.0.0.1 for local use)"
        )


def csrf_ok(session_token: object, form_token: object) -> bool:
    return (
        isinstance(session_token, str)
        and isinstance(form_token, str)
        and bool(session_token)
        and hmac.compare_digest(session_token.encode(), form_token.encode())
    )


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode() not in SECURITY_HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
