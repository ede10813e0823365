"""The console's app served by uvicorn in a thread of the test, for tests that use it over
HTTP (a browser, two consoles on one database)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from bgworkers.console.web.app import create_app
from bgworkers.console.web.site import WebConfig
from tests.platform_helpers import free_port, wait_for


@contextmanager
def serving(config: WebConfig) -> Iterator[str]:
    """The console app served by uvicorn in a thread; its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="the console to listen")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
