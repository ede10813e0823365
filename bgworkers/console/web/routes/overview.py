"""``/``: queues, workers and jobs at a glance."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bgworkers.console.operations import Console
from bgworkers.console.overview import checked_depth_reader, read_overview
from bgworkers.console.web.site import Site
from bgworkers.monitoring.queue_depth import NOT_DECLARED


def routes(site: Site) -> list[Route]:
    settings = site.config.settings
    read_queues = checked_depth_reader(settings)

    async def overview(request: Request, console: Console) -> Response:
        data = await run_in_threadpool(lambda: read_overview(console, read_queues=read_queues))
        return site.render(request, "overview.html", view=data, not_declared=NOT_DECLARED)

    return [Route("/", site.page(overview), methods=["GET"])]
