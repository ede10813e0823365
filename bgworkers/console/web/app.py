"""The console's app: its routes, sessions, security headers and error pages.

Pages are GETs that change nothing; every action is a POST carrying the session's CSRF token,
answered by a redirect (303) to the page it came from with a one-line notice. Database and
RabbitMQ calls block, so they run in Starlette's thread pool.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from bgworkers.console.web.routes import audit, dead_letters, jobs, login, overview
from bgworkers.console.web.security import SecurityHeaders
from bgworkers.console.web.site import HERE, Site, WebConfig

__all__ = ["WebConfig", "create_app"]


def create_app(config: WebConfig) -> Starlette:
    site = Site(config)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        response = site.render(
            request, "error.html", status_code=status, status=status, detail=detail
        )
        response.headers.update(getattr(exc, "headers", None) or {})  # Retry-After of a 429
        return response

    routes: list[BaseRoute] = [
        *login.routes(site),
        *overview.routes(site),
        *dead_letters.routes(site),
        *jobs.routes(site),
        *audit.routes(site),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=config.session_secret,
                session_cookie="bgw_console",
                max_age=config.settings.console_session_max_age_s,
                same_site="strict",
                https_only=config.settings.console_cookie_secure,
            ),
        ],
        exception_handlers={HTTPException: http_error, 500: http_error},
    )
