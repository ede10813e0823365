"""The console's pages and actions (Starlette; templates in ``templates/``).

Pages are GETs that change nothing; every action is a POST carrying the session's CSRF token,
answered by a redirect (303) to the page it came from with a one-line notice. Database and
RabbitMQ calls block, so they run in Starlette's thread pool. Nothing secret reaches a page:
arguments and tracebacks are the index's redacted copies, and settings are never rendered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from bgworkers.console.dead_letters import DeadLetterFilter, as_dict
from bgworkers.console.jobs import JobView, broker_periods, duration_chart, job_views
from bgworkers.console.operations import ActionResult, Console
from bgworkers.console.overview import read_overview
from bgworkers.console.sending import SendRefused
from bgworkers.console.web.security import (
    CSRF_FIELD,
    Credentials,
    SecurityHeaders,
    csrf_ok,
    new_csrf_token,
)
from bgworkers.db.engine import utcnow
from bgworkers.logs.loggers import get_logger
from bgworkers.monitoring.queue_depth import reader_from_settings
from bgworkers.settings import Settings

log = get_logger(__name__)
HERE = Path(__file__).parent
#: Most message ids one form may act on.
MAX_IDS = 500


@dataclass(frozen=True)
class WebConfig:
    settings: Settings
    credentials: Credentials
    no_auth: bool
    session_secret: str
    #: Builds the console acting as ``who`` (the server's uses this process's broker/engine).
    console_for: Callable[[str], Console]


def create_app(config: WebConfig) -> Starlette:
    read_queues = reader_from_settings(
        config.settings.broker_url.get_secret_value(), config.settings.rabbitmq_management_url
    )
    # autoescape everywhere: every value on a page comes from messages and the database.
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    templates = Jinja2Templates(env=env)
    zone = config.settings.tzinfo
    templates.env.filters["when"] = lambda value: _when(value, zone)
    templates.env.filters["ago"] = _ago

    def user_of(request: Request) -> str | None:
        if config.no_auth:
            return "web:no-auth"
        user = request.session.get("user")
        return user if isinstance(user, str) else None

    def csrf_of(request: Request) -> str:
        token = request.session.get(CSRF_FIELD)
        if not isinstance(token, str):
            token = new_csrf_token()
            request.session[CSRF_FIELD] = token
        return token

    def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        context.update(
            user=user_of(request),
            csrf=csrf_of(request),
            notice=request.session.pop("notice", None),
            path=request.url.path,
            auth=not config.no_auth,
        )
        response: Response = templates.TemplateResponse(
            request, name, context, status_code=status_code
        )
        return response

    async def checked_form(request: Request) -> FormData:
        form = await request.form()
        if not csrf_ok(request.session.get(CSRF_FIELD), form.get(CSRF_FIELD)):
            log.warning("console_csrf_refused", path=request.url.path)
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
        return form

    def page(
        handler: Callable[[Request, Console], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            user = user_of(request)
            if user is None:
                if request.method == "POST":
                    raise HTTPException(403, "log in first")
                return RedirectResponse("/login", status_code=303)
            return await handler(request, config.console_for(user))

        return run

    def back(request: Request, to: str, notice: str) -> Response:
        request.session["notice"] = notice
        return RedirectResponse(to, status_code=303)

    # --- login ----------------------------------------------------------------------------
    async def login_page(request: Request) -> Response:
        if user_of(request) is not None:
            return RedirectResponse("/", status_code=303)
        return render(
            request,
            "login.html",
            token_login=bool(config.credentials.token),
            password_login=bool(config.credentials.user),
        )

    async def login(request: Request) -> Response:
        form = await checked_form(request)
        who = config.credentials.check(
            user=str(form.get("user", "")),
            password=str(form.get("password", "")),
            token=str(form.get("token", "")),
        )
        console = config.console_for(who or "web:anonymous")
        if who is None:
            await run_in_threadpool(console.record_login, ok=False, client=_client(request))
            return render(
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
        return back(request, "/", f"logged in as {who}")

    async def logout(request: Request) -> Response:
        await checked_form(request)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # --- pages ----------------------------------------------------------------------------
    async def overview(request: Request, console: Console) -> Response:
        data = await run_in_threadpool(lambda: read_overview(console, read_queues=read_queues))
        return render(request, "overview.html", view=data)

    async def dead_list(request: Request, console: Console) -> Response:
        query = request.query_params
        status = query.get("status", "dead")
        where = DeadLetterFilter(
            queue=query.get("queue") or None,
            actor=query.get("actor") or None,
            since=_since(query.get("since", "")),
            status=None if status == "all" else status,
            limit=500,
        )
        rows = await run_in_threadpool(console.dead_letters, where)
        return render(
            request,
            "dead_list.html",
            rows=[as_dict(r) for r in rows],
            filters={k: query.get(k, "") for k in ("queue", "actor", "since")} | {"status": status},
            statuses=("dead", "requeued", "processed", "all"),
        )

    async def dead_show(request: Request, console: Console) -> Response:
        row = await run_in_threadpool(console.dead_letter, request.path_params["message_id"])
        if row is None:
            raise HTTPException(404, "no such dead letter in the index")
        return render(request, "dead_show.html", row=as_dict(row, full=True))

    async def dead_action(request: Request, console: Console) -> Response:
        form = await checked_form(request)
        action = request.path_params["action"]
        ids = [str(i) for i in form.getlist("id")][:MAX_IDS]
        back_to = str(form.get("back", "/dead"))
        back_to = back_to if back_to.startswith("/dead") else "/dead"
        if not ids:
            return back(request, back_to, "nothing selected")
        if action == "purge" and form.get("confirm") != "yes":
            return back(request, back_to, "purge not confirmed: tick “delete for good” first")
        run = console.requeue if action == "requeue" else console.purge
        result: ActionResult = await run_in_threadpool(run, ids)
        verb = "requeued" if action == "requeue" else "purged"
        notice = f"{len(result.done)} {verb}"
        if result.not_found:
            notice += f", {len(result.not_found)} not found (no longer dead letters)"
        return back(request, "/dead" if action == "purge" else back_to, notice)

    async def jobs_page(request: Request, console: Console) -> Response:
        views: list[JobView] = await run_in_threadpool(lambda: _job_views(console))
        charts = {v.name: duration_chart(v.runs) for v in views}
        return render(request, "jobs.html", jobs=views, charts=charts)

    async def job_action(request: Request, console: Console) -> Response:
        form = await checked_form(request)
        job, action = request.path_params["job"], request.path_params["action"]
        try:
            if action == "pause":
                reason = str(form.get("reason", "")).strip()
                if not reason:
                    return back(request, "/jobs", "a pause needs a reason")
                done = await run_in_threadpool(console.pause, job, reason)
                notice = f"{job} paused" if done else f"{job} was already paused"
            elif action == "resume":
                done = await run_in_threadpool(console.resume, job)
                notice = f"{job} resumed" if done else f"{job} was not paused"
            else:
                message = await run_in_threadpool(console.run_job, job)
                notice = f"{job}: manual run sent ({message.message_id})"
        except SendRefused as exc:
            notice = str(exc)
        return back(request, "/jobs", notice)

    async def audit_page(request: Request, console: Console) -> Response:
        entries = await run_in_threadpool(console.audit_log, 500)
        return render(request, "audit.html", entries=entries)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return render(request, "error.html", status_code=status, status=status, detail=detail)

    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", page(overview), methods=["GET"]),
        Route("/dead", page(dead_list), methods=["GET"]),
        Route("/dead/{action:str}", page(dead_action), methods=["POST"]),
        Route("/dead/{message_id:str}", page(dead_show), methods=["GET"]),
        Route("/jobs", page(jobs_page), methods=["GET"]),
        Route("/jobs/{job:str}/{action:str}", page(job_action), methods=["POST"]),
        Route("/audit", page(audit_page), methods=["GET"]),
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


def _job_views(console: Console) -> list[JobView]:
    with console.session() as session:
        return job_views(session, broker_periods(console.broker), now=utcnow())


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _since(text: str) -> datetime | None:
    units = {"m": "minutes", "h": "hours", "d": "days"}
    text = text.strip()
    if len(text) >= 2 and text[:-1].isdigit() and text[-1] in units:
        return utcnow() - timedelta(**{units[text[-1]]: int(text[:-1])})
    return None


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
