"""``bgworkers console``: serve the web console with uvicorn, on its own port.

Refuses to start (exit code 2, one line) without credentials, unless ``--no-auth`` is given
with a loopback bind address; see :mod:`~.security`.
"""

from __future__ import annotations

import secrets
import sys

import uvicorn

from bgworkers.console.web.app import WebConfig, create_app
from bgworkers.console.web.security import Credentials, check_startup, session_key
from bgworkers.errors import ConfigurationError
from bgworkers.logs.loggers import get_logger
from bgworkers.settings import Settings

log = get_logger(__name__)


def serve(settings: Settings, *, host: str | None, port: int | None, no_auth: bool) -> int:
    from bgworkers.console.commands import make_console

    bind = host or settings.console_host
    listen = port or settings.console_port
    credentials = Credentials.from_settings(settings)
    try:
        check_startup(credentials, host=bind, no_auth=no_auth)
    except ConfigurationError as exc:
        print(f"bgworkers console: {exc}", file=sys.stderr)
        return 2
    secret = settings.console_session_secret
    config = WebConfig(
        settings=settings,
        credentials=credentials,
        no_auth=no_auth,
        # Bound to the credentials: a changed password, token or secret revokes every session.
        session_secret=session_key(
            secret.get_secret_value() if secret else secrets.token_urlsafe(32), credentials
        ),
        console_for=lambda who: make_console(settings, who),
    )
    log.info("console_starting", host=bind, port=listen, auth=not no_auth)
    # log_config=None: uvicorn's lines go through bgworkers' logging, as JSON in production.
    uvicorn.run(create_app(config), host=bind, port=listen, log_config=None, server_header=False)
    return 0
