"""What every page of the console shares: templates, the logged-in user, CSRF, redirects.

One :class:`Site` is made per app by :func:`~bgworkers.console.web.app.create_app` and handed
to each route module, so a page handler is a plain function of the request, the site and the
console acting as the logged-in user.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from bgworkers.console.operations import Console
from bgworkers.console.web.security import CSRF_FIELD, Credentials, csrf_ok
from bgworkers.console.web.throttle import LoginThrottle
from bgworkers.logs.loggers import get_logger
from bgworkers.settings import Settings

log = get_logger(__name__)
HERE = Path(__file__).parent

#: A page handler: the request and the console acting as the logged-in user.
PageHandler = Callable[[Request, Console], Awaitable[Response]]


@dataclass(frozen=True)
class WebConfig:
    settings: Settings
    credentials: Credentials
    no_auth: bool
    session_secret: str
    #: Builds the console acting as ``who`` (the server's uses this process's broker/engine).
    console_for: Callable[[str], Console]
    throttle: LoginThrottle = field(default_factory=LoginThrottle)


class Site:
    """The helpers every route module uses, bound to one app's configuration."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        # autoescape everywhere: every value on a page comes from messages and the database.
        env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
        self.templates = Jinja2Templates(env=env)
        zone = config.settings.tzinfo
        self.templates.env.filters["when"] = lambda value: _when(value, zone)
        self.templates.env.filters["ago"] = _ago

    def user_of(self, request: Request) -> str | None:
        if self.config.no_auth:
            return "web:no-auth"
        user = request.session.get("user")
        return user if isinstance(user, str) else None

    def csrf_of(self, request: Request) -> str:
        token = request.session.get(CSRF_FIELD)
        if not isinstance(token, str):
            token = secrets.token_urlsafe(32)
            request.session[CSRF_FIELD] = token
        return token

    def render(
        self, request: Request, name: str, status_code: int = 200, **context: Any
    ) -> Response:
        context.update(
            user=self.user_of(request),
            csrf=self.csrf_of(request),
            notice=request.session.pop("notice", None),
            path=request.url.path,
            auth=not self.config.no_auth,
        )
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)

    async def checked_form(self, request: Request) -> FormData:
        form = await request.form()
        if not csrf_ok(request.session.get(CSRF_FIELD), form.get(CSRF_FIELD)):
            log.warning("console_csrf_refused", path=request.url.path)
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
        return form

    def page(self, handler: PageHandler) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` behind the login: a GET without a user goes to /login, a POST is 403."""

        async def run(request: Request) -> Response:
            user = self.user_of(request)
            if user is None:
                if request.method == "POST":
                    raise HTTPException(403, "log in first")
                return RedirectResponse("/login", status_code=303)
            return await handler(request, self.config.console_for(user))

        return run

    def back(self, request: Request, to: str, notice: str) -> Response:
        request.session["notice"] = notice
        return RedirectResponse(to, status_code=303)


def _when(value: datetime | str | None, zone: ZoneInfo) -> str:
    """A time on a page: in the operator's zone (``BGW_TIMEZONE``), to the second."""
    if not value:
        return "-"
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    return instant.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"
