"""The database waiter: paused while the database is away, resumed once it answers."""

from __future__ import annotations

from collections import deque

from bgworkers.middleware.process_hooks import DatabaseWait
from bgworkers.processes.diagnosis import EXIT_CONFIGURATION, EXIT_UNAVAILABLE, Problem
from bgworkers.settings import Settings, load_settings
from tests.platform_helpers import captured_json_logs, wait_for

AWAY = Problem("database_unreachable", EXIT_UNAVAILABLE, "start PostgreSQL")


class FakeWorker:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause(self) -> None:
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")


def scripted(*answers: Problem | None):  # type: ignore[no-untyped-def]
    queue = deque(answers)

    def probe(_: Settings) -> Problem | None:
        return queue.popleft() if len(queue) > 1 else queue[0]

    return probe


def test_the_worker_waits_paused_logging_once_then_resumes() -> None:
    worker = FakeWorker()
    settings = load_settings(database_url="postgresql+psycopg://app:s3cret@db:5432/app")
    wait = DatabaseWait(
        worker,  # type: ignore[arg-type]
        settings,
        probe=scripted(AWAY, AWAY, AWAY, None),
        interval_s=0.01,
        log_interval_s=60,
    )
    with captured_json_logs() as logs:
        wait.start().join(10)
    assert worker.calls == ["pause", "resume"]
    assert wait.resumed.is_set()
    events = [line["event"] for line in logs]
    assert events == ["database_unreachable", "database_reachable"]  # one line, not three
    assert "s3cret" not in str(logs)
    assert "start PostgreSQL" in logs[0]["hint"]


def test_a_schema_to_migrate_once_the_database_answers_stops_the_process() -> None:
    exits: list[int] = []
    worker = FakeWorker()
    wait = DatabaseWait(
        worker,  # type: ignore[arg-type]
        load_settings(),
        probe=scripted(AWAY, Problem("schema_missing", EXIT_CONFIGURATION, "run migrate")),
        interval_s=0.01,
        exit_process=exits.append,
    )
    wait.start()
    wait_for(lambda: exits == [EXIT_CONFIGURATION], what="the exit with code 2")
    assert worker.calls == ["pause"]
