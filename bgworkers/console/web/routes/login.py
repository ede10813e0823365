"""``/login`` and ``/logout``: a fresh session (and CSRF token) for each login, each recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bgworkers.console.operations import Console
from bgworkers.console.web.site import Site
from bgworkers.console.web.throttle import refuse_login

T = TypeVar("T")


def routes(site: Site) -> list[Route]:
    config = site.config
    offered = {  # which login forms the page shows
        "token_login": bool(config.credentials.token),
        "password_login": bool(config.credentials.user),
    }

    async def login_page(request: Request) -> Response:
        if site.user_of(request) is not None:
            return RedirectResponse("/", status_code=303)
        return site.render(request, "login.html", **offered)

    async def login(request: Request) -> Response:
        form = await site.checked_form(request)
        name, client = str(form.get("user", "")), _client(request)
        anonymous = config.console_for("web:anonymous")
        throttle = config.throttle
        if wait_s := await counted(anonymous, throttle.retry_after_s, client, name):
            await refuse_login(anonymous, client, wait_s)
        who = config.credentials.check(
            user=name,
            password=str(form.get("password", "")),
            token=str(form.get("token", "")),
        )
        console = config.console_for(who or "web:anonymous")
        if who is None:
            delay_s = await counted(console, throttle.failed, client, name)
            await run_in_threadpool(console.record_login, ok=False, client=client)
            await asyncio.sleep(delay_s)
            error = "wrong user, password or token"
            return site.render(request, "login.html", status_code=401, error=error, **offered)
        await counted(console, throttle.succeeded, client, name)
        request.session.clear()  # a fresh session (and CSRF token) after logging in
        request.session["user"] = who
        await run_in_threadpool(console.record_login, ok=True, client=client)
        return site.back(request, "/", f"logged in as {who}")

    async def logout(request: Request) -> Response:
        await site.checked_form(request)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]


async def counted(console: Console, step: Callable[..., T], client: str, user: str) -> T:
    """One step of the login throttle, in its own transaction, off the event loop."""

    def run() -> T:
        with console.session() as session:
            return step(session, client=client, user=user)

    return await run_in_threadpool(run)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"
