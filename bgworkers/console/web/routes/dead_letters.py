"""``/dead``: the dead-letter index, one dead letter, and requeue or purge of a selection."""

from __future__ import annotations

from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bgworkers.console.dead_letters import DeadLetterFilter, as_dict, parse_since
from bgworkers.console.operations import ActionResult, Console
from bgworkers.console.web.site import Site

#: Most message ids one form may act on.
MAX_IDS = 500


def routes(site: Site) -> list[Route]:
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
        return site.render(
            request,
            "dead_list.html",
            rows=[as_dict(r) for r in rows],
            filters={k: query.get(k, "") for k in ("queue", "actor", "since")} | {"status": status},
            statuses=("dead", "requeued", "processed", "all"),
        )

    async def dead_show(request: Request, console: Console) -> Response:
        message_id = request.path_params["message_id"]
        row = await run_in_threadpool(console.dead_letter, message_id)
        if row is None:
            raise HTTPException(404, "no such dead letter in the index")
        attempts = await run_in_threadpool(console.dead_letter_timeline, message_id)
        return site.render(
            request, "dead_show.html", row=as_dict(row, full=True), attempts=attempts
        )

    async def dead_action(request: Request, console: Console) -> Response:
        form = await site.checked_form(request)
        action = request.path_params["action"]
        ids = [str(i) for i in form.getlist("id")][:MAX_IDS]
        back_to = str(form.get("back", "/dead"))
        back_to = back_to if back_to.startswith("/dead") else "/dead"
        if not ids:
            return site.back(request, back_to, "nothing selected")
        if action == "purge" and form.get("confirm") != "yes":
            return site.back(request, back_to, "purge not confirmed: tick “delete for good” first")
        run = console.requeue if action == "requeue" else console.purge
        result: ActionResult = await run_in_threadpool(run, ids)
        verb = "requeued" if action == "requeue" else "purged"
        notice = f"{len(result.done)} {verb}"
        if result.not_found:
            notice += f", {len(result.not_found)} not found (no longer dead letters)"
        return site.back(request, "/dead" if action == "purge" else back_to, notice)

    return [
        Route("/dead", site.page(dead_list), methods=["GET"]),
        Route("/dead/{action:str}", site.page(dead_action), methods=["POST"]),
        Route("/dead/{message_id:str}", site.page(dead_show), methods=["GET"]),
    ]


def _since(text: str) -> datetime | None:
    """The page's filter takes what ``bgworkers dead list --since`` takes; anything else (or
    nothing) filters nothing."""
    try:
        return parse_since(text) if text.strip() else None
    except ValueError:
        return None
