"""Small helpers for platform tests: a stub broker with bgworkers' stack and a log capture."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

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


class Watched(Protocol):
    """A process a test started: ``check_running`` fails the test, with its log, if it exited."""

    def check_running(self) -> None: ...


def wait_for(
    condition: Callable[[], object],
    *,
    timeout_s: float = 20.0,
    what: str = "",
    watch: Iterable[Watched] = (),
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout_s`` seconds, or at
    once when a process of ``watch`` has exited (no use waiting out the deadline then)."""
    watched = list(watch)
    deadline = time.monotonic() + timeout_s
    while not condition():
        for process in watched:
            process.check_running()
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s:g} s waiting for {what or 'the condition'}"
            )
        time.sleep(0.1)


def stop_process(
    process: subprocess.Popen[Any], *, sig: int = signal.SIGINT, timeout_s: float = 60.0
) -> int:
    """Stop a command the test started as a person would (Ctrl-C by default), killing it if it
    has not exited within ``timeout_s`` seconds; its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@contextmanager
def smtp_server(handler: Any, *, port: int | None = None) -> Iterator[int]:
    """An in-process SMTP server (aiosmtpd) on 127.0.0.1 answering with ``handler``; its port
    (a free one unless given)."""
    from aiosmtpd.controller import Controller

    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
