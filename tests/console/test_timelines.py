"""Why it took so long: each attempt of a dead letter and of a job run, and a dead letter's
trace id, through a real worker on the real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.cli.admin import main
from bgworkers.console.models import Attempt, DeadLetter
from bgworkers.scheduling.models import ScheduledRun
from tests.console import fake_jobs
from tests.platform_helpers import wait_for
from tests.scheduling import probe_jobs

pytestmark = pytest.mark.integration
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    out, _ = capsys.readouterr()
    return code, out.splitlines()


def run_row(engine: Engine, job: str) -> ScheduledRun | None:
    with Session(engine) as session:
        query = select(ScheduledRun).where(ScheduledRun.job == job)
        return session.exec(query).first()


def test_a_dead_letter_shows_its_trace_id_and_its_one_attempt(
    postgres_engine: Engine, app_broker, app_worker, capsys
) -> None:
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    message = fake_jobs.deliver_note.send_with_options(
        kwargs={"note_id": 3, "password": "hunter2"}, traceparent=traceparent
    )

    def indexed() -> DeadLetter | None:
        with Session(postgres_engine) as session:
            return session.get(DeadLetter, message.message_id)

    wait_for(indexed, what="the dead-letter row")
    code, out = cli(capsys, "dead", "show", message.message_id, "--json")
    [shown] = [json.loads(line) for line in out]
    assert code == 0 and shown["trace_id"] == TRACE_ID
    [attempt] = shown["attempts"]
    assert (attempt["attempt"], attempt["outcome"], attempt["waited_s"]) == (1, "dead", None)
    assert attempt["error"] == "PermanentError: inbox refused note 3: mailbox locked"
    assert attempt["duration_s"] >= 0
    code, out = cli(capsys, "dead", "show", message.message_id)
    text = "\n".join(out)
    assert f"trace_id:        {TRACE_ID}" in text and "#1" in text and "hunter2" not in text
    code, out = cli(capsys, "dead", "list")  # the list names the trace too
    [line] = [line for line in out if line.startswith(message.message_id)]
    assert code == 0 and f"trace={TRACE_ID}" in line


def test_a_job_run_retried_then_dead_lettered_has_each_attempt(
    postgres_engine: Engine, app_broker, app_worker, capsys
) -> None:
    probe_jobs.RUNS.clear()
    code, _ = cli(capsys, "jobs", "run", "probe_flaky")
    assert code == 0
    wait_for(
        lambda: (
            (row := run_row(postgres_engine, "probe_flaky")) is not None and row.status == "failed"
        ),
        what="the flaky job's run dead-lettered after its retries",
    )
    code, out = cli(capsys, "jobs", "runs", "probe_flaky", "--json")
    [run] = [json.loads(line) for line in out]
    assert code == 0 and run["status"] == "failed" and run["manual"] is True
    attempts: list[dict[str, Any]] = run["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["outcome"] for a in attempts] == ["retried", "retried", "dead"]
    assert {a["error"] for a in attempts} == {"TransientError: probe failure"}
    assert attempts[0]["waited_s"] is None
    assert all(a["waited_s"] >= 0 for a in attempts[1:])  # the retries' backoff
    code, out = cli(capsys, "jobs", "runs", "probe_flaky")
    assert code == 0 and sum("TransientError: probe failure" in line for line in out) == 3
    code, out = cli(capsys, "dead", "show", run["message_id"], "--json")
    assert [a["outcome"] for a in json.loads(out[0])["attempts"]] == ["retried", "retried", "dead"]


def test_a_job_run_that_succeeded_at_once_records_no_attempt_and_shows_the_run(
    postgres_engine: Engine, app_broker, app_worker, capsys
) -> None:
    assert cli(capsys, "jobs", "run", "probe_every_minute")[0] == 0
    wait_for(
        lambda: (
            (row := run_row(postgres_engine, "probe_every_minute")) is not None
            and row.status == "succeeded"
        ),
        what="the job's run",
    )
    code, out = cli(capsys, "jobs", "runs", "probe_every_minute", "--json")
    [run] = [json.loads(line) for line in out]
    assert code == 0 and run["status"] == "succeeded"
    [attempt] = run["attempts"]
    assert (attempt["attempt"], attempt["outcome"], attempt["error"]) == (1, "succeeded", "")
    with Session(postgres_engine) as session:
        assert session.exec(select(Attempt)).all() == []  # the common path writes nothing
    assert main(["jobs", "runs", "no_such_job"]) == 2  # one line, no traceback
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "no_such_job" in err


def test_a_retried_message_that_then_succeeds_ends_its_timeline(
    postgres_engine: Engine, app_broker, app_worker
) -> None:
    fake_jobs.INBOX.broken = False
    fake_jobs.INBOX.flaky_failures = 1
    message = fake_jobs.flaky_note.send(note_id=5)
    wait_for(lambda: 5 in fake_jobs.INBOX.delivered, what="the note delivered on its retry")

    def attempts() -> list[Attempt]:
        with Session(postgres_engine) as session:
            query = select(Attempt).where(Attempt.message_id == message.message_id)
            return list(session.exec(query.order_by(Attempt.attempt)))

    wait_for(lambda: len(attempts()) == 2, what="both attempts recorded")
    assert [(a.attempt, a.outcome) for a in attempts()] == [(1, "retried"), (2, "succeeded")]
