"""Small stateful fakes of Google Calendar v3 (+ OAuth token endpoint) and Notion's search.

They speak the documented wire formats (query parameters, JSON bodies, error bodies, status
codes, ``Retry-After``) and are plain callables ``request -> response``: give one to
``httpx.MockTransport`` or serve it over real HTTP with :func:`serve_http`.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx

Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    """Monotonic seconds that only move when something sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Injected:
    """A scripted answer: skip ``after`` matching calls, then answer ``times`` times."""

    kind: str
    response: Callable[[], httpx.Response]
    after: int = 0
    times: int = 1


@dataclass
class _Listing:
    since: int | None  # None: full listing; else the change sequence of the sync token
    end_seq: int  # the sequence the listing's nextSyncToken will stand for
    offset: int


def google_error(status: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "error": {
            "errors": [{"domain": "global", "reason": reason, "message": message}],
            "code": status,
            "message": message,
        }
    }


@dataclass
class FakeGoogleCalendar:
    """Google Calendar ``events.list`` and the OAuth 2.0 token endpoint."""

    client_id: str = "client-id"
    client_secret: str = "client-secret"
    calendars: set[str] = field(default_factory=lambda: {"primary"})
    access_tokens: set[str] = field(default_factory=lambda: {"access-initial"})
    refresh_tokens: set[str] = field(default_factory=lambda: {"refresh-initial"})
    #: When False, the events endpoint refuses every access token (even fresh ones).
    accept_access: bool = True
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed_at: dict[str, int] = field(default_factory=dict)
    seq: int = 0
    sync_tokens: dict[str, int] = field(default_factory=dict)
    page_tokens: dict[str, _Listing] = field(default_factory=dict)
    injected: list[Injected] = field(default_factory=list)
    calls: list[httpx.Request] = field(default_factory=list)
    issued_access_tokens: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- state changes, as a user editing the calendar would make them ---------------------

    def put_event(
        self,
        event_id: str,
        *,
        summary: str = "",
        start: datetime | None = None,
        hours: float = 1.0,
        all_day: str | None = None,
        status: str = "confirmed",
    ) -> None:
        self.seq += 1
        body: dict[str, Any] = {
            "kind": "calendar#event",
            "etag": f'"{self.seq}"',
            "id": event_id,
            "status": status,
            "summary": summary,
            "updated": f"2026-11-01T00:00:{self.seq % 60:02d}.000Z",
        }
        if all_day is not None:
            day = datetime.fromisoformat(all_day).date()
            body["start"] = {"date": day.isoformat()}
            body["end"] = {"date": (day + timedelta(days=1)).isoformat()}
        else:
            start = start or datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
            body["start"] = {"dateTime": start.isoformat(), "timeZone": "Europe/Paris"}
            body["end"] = {"dateTime": (start + timedelta(hours=hours)).isoformat()}
        self.events[event_id] = body
        self.changed_at[event_id] = self.seq

    def cancel_event(self, event_id: str) -> None:
        self.seq += 1
        self.events[event_id] = {
            "kind": "calendar#event",
            "etag": f'"{self.seq}"',
            "id": event_id,
            "status": "cancelled",
        }
        self.changed_at[event_id] = self.seq

    def purge_event(self, event_id: str) -> None:
        """Forget an event entirely (deleted long ago: no incremental listing reports it)."""
        self.events.pop(event_id, None)
        self.changed_at.pop(event_id, None)

    def expire_sync_tokens(self) -> None:
        self.sync_tokens.clear()

    def inject(self, kind: str, status: int, *, after: int = 0, times: int = 1, **kw: Any) -> None:
        """Answer the next ``times`` calls of ``kind`` ("events" or "token") with ``status``."""
        headers = kw.get("headers", {})
        body = kw.get("body") or google_error(status, kw.get("reason", "backendError"), "fake")
        self.injected.append(
            Injected(kind, lambda: httpx.Response(status, json=body, headers=headers), after, times)
        )

    # --- HTTP ---------------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.calls.append(request)
            if request.method == "POST" and request.url.path.endswith("/token"):
                return self._scripted("token") or self._token(request)
            match = re.search(r"/calendars/([^/]+)/events$", request.url.path)
            if request.method == "GET" and match:
                return self._scripted("events") or self._list(request, match.group(1))
            return httpx.Response(404, json=google_error(404, "notFound", "Not Found"))

    def _scripted(self, kind: str) -> httpx.Response | None:
        for entry in self.injected:
            if entry.kind != kind:
                continue
            if entry.after > 0:
                entry.after -= 1
                continue
            if entry.times > 0:
                entry.times -= 1
                return entry.response()
        return None

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if form.get("client_id") != self.client_id or form.get("client_secret") != (
            self.client_secret
        ):
            return httpx.Response(
                401, json={"error": "invalid_client", "error_description": "Unauthorized"}
            )
        if form.get("grant_type") != "refresh_token":
            return httpx.Response(400, json={"error": "unsupported_grant_type"})
        if form.get("refresh_token") not in self.refresh_tokens:
            return httpx.Response(
                400,
                json={
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                },
            )
        token = f"access-{uuid.uuid4().hex}"
        self.access_tokens.add(token)
        self.issued_access_tokens.append(token)
        return httpx.Response(
            200,
            json={
                "access_token": token,
                "expires_in": 3599,
                "scope": "https://www.googleapis.com/auth/calendar.readonly",
                "token_type": "Bearer",
            },
        )

    def _list(self, request: httpx.Request, calendar_id: str) -> httpx.Response:
        auth = request.headers.get("Authorization", "")
        if not self.accept_access or auth.removeprefix("Bearer ") not in self.access_tokens:
            return httpx.Response(
                401,
                json=google_error(401, "authError", "Invalid Credentials"),
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        if calendar_id not in self.calendars:
            return httpx.Response(404, json=google_error(404, "notFound", "Not Found"))
        params = request.url.params
        size = min(int(params.get("maxResults", "250")), 2500)
        if "pageToken" in params:
            listing = self.page_tokens.get(params["pageToken"])
            if listing is None:
                return httpx.Response(
                    400, json=google_error(400, "invalid", "Invalid page token value.")
                )
        elif "syncToken" in params:
            since = self.sync_tokens.get(params["syncToken"])
            if since is None:
                message = "Sync token is no longer valid, a full sync is required."
                return httpx.Response(410, json=google_error(410, "fullSyncRequired", message))
            listing = _Listing(since=since, end_seq=self.seq, offset=0)
        else:
            listing = _Listing(since=None, end_seq=self.seq, offset=0)
        if listing.since is None:
            ids = sorted(i for i, e in self.events.items() if e["status"] != "cancelled")
        else:
            since = listing.since
            ids = sorted(
                (i for i, s in self.changed_at.items() if s > since), key=self.changed_at.get
            )
        chunk = ids[listing.offset : listing.offset + size]
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"{self.seq}"',
            "summary": "fake@example.com",
            "updated": "2026-11-25T00:00:00.000Z",
            "timeZone": "Europe/Paris",
            "accessRole": "owner",
            "items": [self.events[i] for i in chunk],
        }
        if listing.offset + size < len(ids):
            token = f"page-{uuid.uuid4().hex}"
            self.page_tokens[token] = _Listing(
                listing.since, listing.end_seq, listing.offset + size
            )
            body["nextPageToken"] = token
        else:
            token = f"sync-{uuid.uuid4().hex}"
            self.sync_tokens[token] = listing.end_seq
            body["nextSyncToken"] = token
        return httpx.Response(200, json=body)

    def event_calls(self) -> list[httpx.Request]:
        return [c for c in self.calls if c.method == "GET"]

    def token_calls(self) -> list[httpx.Request]:
        return [c for c in self.calls if c.method == "POST"]


def notion_error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"object": "error", "status": status, "code": code, "message": message}


@dataclass
class FakeNotion:
    """Notion's ``POST /v1/search``; with ``clock`` it enforces a minimum request interval."""

    token: str = "secret_notion-initial"
    version: str = "2022-06-28"
    clock: FakeClock | None = None
    min_interval_s: float = 1 / 3
    pages: dict[str, dict[str, Any]] = field(default_factory=dict)
    cursors: dict[str, int] = field(default_factory=dict)
    injected: list[Injected] = field(default_factory=list)
    calls: list[httpx.Request] = field(default_factory=list)
    call_times: list[float] = field(default_factory=list)
    rate_limited: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put_page(
        self, title: str, *, edited: datetime, archived: bool = False, page_id: str | None = None
    ) -> str:
        page_id = page_id or str(uuid.uuid4())
        self.pages[page_id] = {
            "object": "page",
            "id": page_id,
            "created_time": "2026-01-01T00:00:00.000Z",
            "last_edited_time": edited.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "created_by": {"object": "user", "id": "u1"},
            "last_edited_by": {"object": "user", "id": "u1"},
            "cover": None,
            "icon": None,
            "parent": {"type": "workspace", "workspace": True},
            "archived": archived,
            "in_trash": archived,
            "properties": {
                "title": {
                    "id": "title",
                    "type": "title",
                    "title": [
                        {
                            "type": "text",
                            "text": {"content": title, "link": None},
                            "annotations": {"bold": False},
                            "plain_text": title,
                            "href": None,
                        }
                    ],
                }
            },
            "url": f"https://www.notion.so/{title.replace(' ', '-')}-{page_id.replace('-', '')}",
            "public_url": None,
        }
        return page_id

    def archive_page(self, page_id: str) -> None:
        """Move a page to the trash: Notion sets both flags and its search stops listing it."""
        self.pages[page_id]["archived"] = self.pages[page_id]["in_trash"] = True

    def restore_page(self, page_id: str) -> None:
        self.pages[page_id]["archived"] = self.pages[page_id]["in_trash"] = False

    def unshare_page(self, page_id: str) -> None:
        """The user removed the integration's access: the page is no longer searchable."""
        del self.pages[page_id]

    def inject(self, status: int, *, after: int = 0, times: int = 1, **kw: Any) -> None:
        headers = kw.get("headers", {})
        body = notion_error(status, kw.get("code", "internal_server_error"), "fake")
        self.injected.append(
            Injected(
                "search", lambda: httpx.Response(status, json=body, headers=headers), after, times
            )
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.calls.append(request)
            if self.clock is not None:
                now = self.clock.monotonic()
                too_soon = bool(self.call_times) and (
                    now - self.call_times[-1] < self.min_interval_s - 1e-9
                )
                self.call_times.append(now)
                if too_soon:
                    self.rate_limited += 1
                    return httpx.Response(
                        429,
                        json=notion_error(429, "rate_limited", "You have been rate limited."),
                        headers={"Retry-After": "1"},
                    )
            if request.method != "POST" or request.url.path != "/v1/search":
                return httpx.Response(404, json=notion_error(404, "object_not_found", "nope"))
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return httpx.Response(
                    401, json=notion_error(401, "unauthorized", "API token is invalid.")
                )
            if request.headers.get("Notion-Version") != self.version:
                return httpx.Response(
                    400, json=notion_error(400, "missing_version", "Notion-Version is required")
                )
            for entry in self.injected:
                if entry.after > 0:
                    entry.after -= 1
                    continue
                if entry.times > 0:
                    entry.times -= 1
                    return entry.response()
            return self._search(json.loads(request.content or b"{}"))

    def _search(self, body: dict[str, Any]) -> httpx.Response:
        size = body.get("page_size", 100)
        if not isinstance(size, int) or not 1 <= size <= 100:
            return httpx.Response(
                400, json=notion_error(400, "validation_error", "page_size invalid")
            )
        wanted = (body.get("filter") or {}).get("value")
        items = [p for p in self.pages.values() if wanted in (None, p["object"])]
        items = [p for p in items if not p["in_trash"]]
        items.sort(key=lambda p: (p["last_edited_time"], p["id"]), reverse=True)
        offset = 0
        if body.get("start_cursor"):
            if body["start_cursor"] not in self.cursors:
                return httpx.Response(
                    400,
                    json=notion_error(400, "validation_error", "start_cursor is invalid."),
                )
            offset = self.cursors[body["start_cursor"]]
        chunk = items[offset : offset + size]
        has_more = offset + size < len(items)
        next_cursor = None
        if has_more:
            next_cursor = str(uuid.uuid4())
            self.cursors[next_cursor] = offset + size
        return httpx.Response(
            200,
            json={
                "object": "list",
                "results": chunk,
                "next_cursor": next_cursor,
                "has_more": has_more,
                "type": "page_or_database",
                "page_or_database": {},
                "request_id": str(uuid.uuid4()),
            },
        )


@contextmanager
def serve_http(handler: Handler) -> Iterator[str]:
    """Serve ``handler`` on a real local HTTP server; yields its base URL."""

    class _RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            content = self.rfile.read(length) if length else b""
            request = httpx.Request(
                self.command,
                f"http://{self.headers.get('Host')}{self.path}",
                headers=list(self.headers.items()),
                content=content,
            )
            response = handler(request)
            payload = response.read()
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _handle
        do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the server's access log would print request URLs to stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class NotionWorkspaces:
    """Notion's search for many tokens (a :class:`FakeNotion` each), counting per token.

    A token in ``storms`` is answered ``429`` with ``Retry-After: retry_after_s`` for its
    first ``storms[token]`` requests. ``seen`` is every request as ``(monotonic seconds,
    token, status)``, in arrival order: each token's timeline at the server.
    """

    version: str = "2022-06-28"
    retry_after_s: float = 3.0
    storms: dict[str, int] = field(default_factory=dict)
    workspaces: dict[str, FakeNotion] = field(default_factory=dict)
    seen: list[tuple[float, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, token: str, *, pages: int = 1) -> None:
        workspace = FakeNotion(token=token, version=self.version)
        for n in range(pages):
            workspace.put_page(f"{token} {n}", edited=datetime(2026, 11, 20, tzinfo=UTC))
        self.workspaces[token] = workspace

    def requests_of(self, token: str) -> list[tuple[float, int]]:
        with self.lock:
            return [(at, status) for at, t, status in self.seen if t == token]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        with self.lock:
            storm = self.storms.get(token, 0)
            if storm > 0:
                self.storms[token] = storm - 1
                response = httpx.Response(
                    429,
                    json=notion_error(429, "rate_limited", "You have been rate limited."),
                    headers={"Retry-After": f"{self.retry_after_s:g}"},
                )
            elif token in self.workspaces:
                response = self.workspaces[token](request)
            else:
                response = httpx.Response(
                    401, json=notion_error(401, "unauthorized", "API token is invalid.")
                )
            self.seen.append((time.monotonic(), token, response.status_code))
        return response
