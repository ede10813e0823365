"""``/audit``: the latest console actions, who did them and when."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bgworkers.console.operations import Console
from bgworkers.console.web.site import Site


def routes(site: Site) -> list[Route]:
    async def audit_page(request: Request, console: Console) -> Response:
        entries = await run_in_threadpool(console.audit_log, 500)
        return site.render(request, "audit.html", entries=entries)

    return [Route("/audit", site.page(audit_page), methods=["GET"])]
