"""``/login`` and ``/logout``: a fresh session (and CSRF token) for each login, each recorded."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bgworkers.console.web.site import Site


def routes(site: Site) -> list[Route]:
    config = site.config

    async def login_page(request: Request) -> Response:
        if site.user_of(request) is not None:
            return RedirectResponse("/", status_code=303)
        return site.render(
            request,
            "login.html",
            token_login=bool(config.credentials.token),
            password_login=bool(config.credentials.user),
        )

    async def login(request: Request) -> Response:
        form = await site.checked_form(request)
        who = config.credentials.check(
            user=str(form.get("user", "")),
            password=str(form.get("password", "")),
            token=str(form.get("token", "")),
        )
        console = config.console_for(who or "web:anonymous")
        if who is None:
            await run_in_threadpool(console.record_login, ok=False, client=_client(request))
            return site.render(
                request,
                "login.html",
                status_code=401,
                error="wrong user, password or token",
                token_login=bool(config.credentials.token),
                password_login=bool(config.credentials.user),
            )
        request.session.clear()  # a fresh session (and CSRF token) after logging in
        request.session["user"] = who
        await run_in_threadpool(console.record_login, ok=True, client=_client(request))
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


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"
