"""Batched log lines: nothing lost, nothing reordered, urgent lines at once, exits flush."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bgworkers.logs.log_writer import BatchedLineWriter
from bgworkers.logs.loggers import configure_logging, get_logger, reset_logging
from tests.platform_helpers import wait_for


class Sink:
    """A stream that records each write call."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        self.flushes += 1

    @property
    def lines(self) -> list[str]:
        return "".join(self.writes).splitlines()


def run_in_threads(target: Callable[[int], object], count: int) -> None:
    """``target(0)`` ... ``target(count - 1)``, each on its own thread, all joined."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def writer_for(sink: Sink, **kwargs: float) -> BatchedLineWriter:
    return BatchedLineWriter(sink.write, sink.flush, threading.RLock(), **kwargs)  # type: ignore[arg-type]


def test_lines_wait_for_their_batch_and_go_out_in_one_write() -> None:
    sink = Sink()
    writer = writer_for(sink, interval_s=60.0, max_lines=3)
    writer.submit("a\n")
    writer.submit("b\n")
    assert sink.writes == []  # neither old nor many enough yet
    writer.submit("c\n")
    assert sink.writes == ["a\nb\nc\n"]


def test_an_urgent_line_is_written_at_once_after_what_was_queued_before_it() -> None:
    sink = Sink()
    writer = writer_for(sink, interval_s=60.0, max_lines=100)
    writer.submit("info 1\n")
    writer.submit("info 2\n")
    writer.submit("warning\n", urgent=True)
    assert sink.lines == ["info 1", "info 2", "warning"]
    assert sink.flushes >= 1


def test_an_idle_process_writes_its_last_lines_within_the_interval() -> None:
    sink = Sink()
    writer = writer_for(sink, interval_s=0.05, max_lines=100)
    writer.submit("last words\n")
    wait_for(lambda: bool(sink.writes), timeout_s=5, what="the idle writer's flush")
    assert sink.lines == ["last words"]


def test_eight_threads_lose_nothing_and_keep_each_threads_order() -> None:
    sink = Sink()
    writer = writer_for(sink, interval_s=0.01, max_lines=64)

    def log_from(thread: int) -> None:
        for i in range(2_000):
            writer.submit(f"{thread} {i}\n")

    run_in_threads(log_from, 8)
    writer.flush()
    by_thread: dict[str, list[int]] = {}
    for line in sink.lines:
        thread_id, number = line.split()
        by_thread.setdefault(thread_id, []).append(int(number))
    assert sorted(by_thread) == [str(t) for t in range(8)]
    for numbers in by_thread.values():
        assert numbers == list(range(2_000))
    # Each write is whole lines. How many writes there are depends on the machine's speed
    # (the 10-ms timer, a batch growing while another thread writes): batching itself is
    # checked without threads, in test_lines_wait_for_their_batch_and_go_out_in_one_write.
    assert all(write.endswith("\n") for write in sink.writes)


@pytest.fixture
def batched_logging() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(log_format="json", level="INFO", stream=stream, batched=True)
    yield stream
    reset_logging()


def test_warnings_are_not_held_back_and_flush_writes_the_rest(
    batched_logging: io.StringIO,
) -> None:
    log = get_logger("bgworkers.test")
    log.info("first")
    log.warning("second")
    events = [json.loads(line)["event"] for line in batched_logging.getvalue().splitlines()]
    assert events == ["first", "second"]
    log.info("third")
    [ours] = [h for h in logging.getLogger().handlers if getattr(h, "_bgworkers", False)]
    ours.flush()
    assert json.loads(batched_logging.getvalue().splitlines()[-1])["event"] == "third"


def _child_logs_and_exits(path: str) -> None:
    # As a dramatiq worker process: logging set up in the child, then sys.exit, which a
    # multiprocessing child turns into os._exit without the interpreter's exit handlers.
    stream = open(path, "w")  # noqa: SIM115 - the process ends with it
    configure_logging(log_format="json", level="INFO", stream=stream, batched=True)
    for i in range(3):
        get_logger("bgworkers.test").info("queued", i=i)
    sys.exit(0)


def test_a_multiprocessing_child_writes_its_queued_lines_when_it_exits(tmp_path: Path) -> None:
    path = tmp_path / "child.log"
    child = multiprocessing.get_context("fork").Process(
        target=_child_logs_and_exits, args=(str(path),)
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["i"] for line in lines] == [0, 1, 2]


def test_a_forked_child_does_not_write_its_parents_queued_lines(tmp_path: Path) -> None:
    path = tmp_path / "both.log"
    with open(path, "w") as stream:
        writer = BatchedLineWriter(stream.write, stream.flush, threading.RLock(), interval_s=60.0)
        writer.submit("parent's line\n")

        def child() -> None:
            writer.submit("child's line\n", urgent=True)

        process = multiprocessing.get_context("fork").Process(target=child)
        process.start()
        process.join(30)
        assert process.exitcode == 0
        writer.flush()
    assert path.read_text().splitlines() == ["child's line", "parent's line"]


def _child_threads_log_first_lines_at_once(writer: BatchedLineWriter) -> None:
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: widen any race
    barrier = threading.Barrier(8)

    def first_line(i: int) -> None:
        barrier.wait()
        writer.submit(f"{i}\n")

    run_in_threads(first_line, 8)
    writer.flush()


def test_threads_of_a_forked_child_logging_their_first_lines_at_once_lose_none(
    tmp_path: Path,
) -> None:
    """In a child, every thread's first line finds the writer not yet started there; the one
    that starts it must not drop the lines the others queued meanwhile."""
    for attempt in range(20):
        path = tmp_path / f"child-{attempt}.log"
        with open(path, "w") as stream:
            writer = BatchedLineWriter(
                stream.write, stream.flush, threading.RLock(), interval_s=60.0
            )
            writer.submit("parent's line\n")  # started here: the child must restart it
            process = multiprocessing.get_context("fork").Process(
                target=_child_threads_log_first_lines_at_once, args=(writer,)
            )
            process.start()
            process.join(30)
            assert process.exitcode == 0
        assert sorted(path.read_text().splitlines()) == [str(i) for i in range(8)], attempt
