"""``/jobs``: the scheduled jobs with their recent runs; pause, resume and run now."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bgworkers.console.jobs import duration_chart
from bgworkers.console.operations import Console, SendRefused
from bgworkers.console.web.site import Site


def routes(site: Site) -> list[Route]:
    async def jobs_page(request: Request, console: Console) -> Response:
        views = await run_in_threadpool(console.jobs)
        charts = {v.name: duration_chart(v.runs) for v in views}
        return site.render(request, "jobs.html", jobs=views, charts=charts)

    async def job_runs(request: Request, console: Console) -> Response:
        job = request.path_params["job"]
        try:
            runs = await run_in_threadpool(console.job_runs, job)
        except SendRefused as exc:
            raise HTTPException(404, str(exc)) from None
        return site.render(request, "job_runs.html", job=job, runs=runs)

    async def job_action(request: Request, console: Console) -> Response:
        form = await site.checked_form(request)
        job, action = request.path_params["job"], request.path_params["action"]
        try:
            if action == "pause":
                reason = str(form.get("reason", "")).strip()
                if not reason:
                    return site.back(request, "/jobs", "a pause needs a reason")
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
        return site.back(request, "/jobs", notice)

    return [
        Route("/jobs", site.page(jobs_page), methods=["GET"]),
        Route("/jobs/{job:str}", site.page(job_runs), methods=["GET"]),
        Route("/jobs/{job:str}/{action:str}", site.page(job_action), methods=["POST"]),
    ]
