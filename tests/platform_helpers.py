"""Small helpers for platform tests: a stub broker with bgworkers' stack and a log capture."""

from __future__ import annotations

import io
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

from bgworkers.logs.loggers import configure_logging, reset_logging
from bgworkers.settings import get_settings
from bgworkers.stack.broker import build_stub_broker

#: Under CI every integration test must run: a missing service fails instead of skipping.
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def stub_broker() -> StubBroker:
    broker = build_stub_broker(get_settings())
    broker.emit_after("process_boot")
    return broker


@contextmanager
def running_worker(broker: dramatiq.Broker, *, threads: int = 2) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=threads)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@contextmanager
def captured_json_logs() -> Iterator[list[dict[str, Any]]]:
    """Every log line of the block, parsed; fails the test if one is not valid JSON."""
    stream = io.StringIO()
    configure_logging(log_format="json", level="DEBUG", stream=stream)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        reset_logging()
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines())


def free_port() -> int:
    """A TCP port nothing listens on right now (for servers the test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], *, timeout_s: float = 20.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or 'the condition'}")
        time.sleep(0.1)
