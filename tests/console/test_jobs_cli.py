"""``bgworkers jobs``: pause, resume and run, with two real ``periodiq`` schedulers.

The schedulers are the real-process ones of ``tests/scheduling/test_processes.py`` (clock
offset, probe jobs); the worker is bgworkers' own broker consumed in this process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers import queues
from bgworkers.cli.admin import main
from bgworkers.console.models import AuditEntry
from bgworkers.scheduling.models import ScheduledRun
from tests.platform_helpers import wait_for
from tests.scheduling import probe_jobs
from tests.scheduling.scheduler_process import Scheduler, at, offset_to

pytestmark = pytest.mark.integration
JOB = "probe_every_minute"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


@pytest.fixture
def schedulers() -> Iterator[list[Scheduler]]:
    started: list[Scheduler] = []
    probe_jobs.RUNS.clear()
    yield started
    for scheduler in started:
        scheduler.kill()


def runs_of(job: str) -> list[datetime]:
    return [datetime.fromisoformat(t) for j, t, _ in list(probe_jobs.RUNS) if j == job]


def test_a_paused_job_skips_its_ticks_with_two_schedulers_and_runs_after_resume(
    postgres_engine: Engine,
    app_broker,
    app_worker,
    rabbitmq_url: str,
    schedulers,
    tmp_path: Path,
    registry,
    capsys,
) -> None:
    code, out, _ = cli(capsys, "jobs", "pause", JOB, "--reason", "inbox outage")
    assert (code, out) == (0, [f"{JOB}  paused"])
    assert cli(capsys, "jobs", "pause", JOB, "--reason", "again")[0] == 1  # already paused
    # Started at 10:57:30 (scheduler clock): periodiq sends the 10:57 tick at once, 10:58 in 30 s.
    offset = offset_to(at("2026-11-25 10:57:30"))
    a, b = (
        Scheduler(tmp_path, name, url=rabbitmq_url, offset_s=offset, probes=[JOB])
        for name in ("a", "b")
    )
    schedulers += [a.start(), b.start()]
    wait_for(
        lambda: a.sends(JOB) >= 1 and b.sends(JOB) >= 1,
        timeout_s=40,
        what="the 10:57 tick",
        watch=[a, b],
    )
    app_broker.join(queues.MAINTENANCE, timeout=30_000)
    paused_sends = a.sends(JOB) + b.sends(JOB)
    assert runs_of(JOB) == []  # sent by both schedulers, run by neither
    skipped = registry.get_sample_value(
        "bgworkers_schedule_skipped_ticks_total", {"periodic_job": JOB, "reason": "paused"}
    )
    assert skipped == paused_sends
    code, out, _ = cli(capsys, "jobs", "--json")
    [row] = [json.loads(line) for line in out if json.loads(line)["job"] == JOB]
    assert (row["paused"], row["paused_reason"]) == (True, "inbox outage")
    code, out, _ = cli(capsys, "jobs")
    assert "inbox outage (by cli:" in next(line for line in out if line.startswith(JOB))
    code, out, _ = cli(capsys, "health")
    assert any(line.startswith("paused") and JOB in line for line in out)

    assert cli(capsys, "jobs", "resume", JOB)[:2] == (0, [f"{JOB}  resumed"])
    before = (a.sends(JOB), b.sends(JOB))
    wait_for(
        lambda: a.sends(JOB) > before[0] and b.sends(JOB) > before[1],
        timeout_s=70,
        what="the next tick",
        watch=[a, b],
    )
    for scheduler in (a, b):
        scheduler.kill()
    app_broker.join(queues.MAINTENANCE, timeout=30_000)
    ticks = runs_of(JOB)
    assert ticks and len(ticks) == len(set(ticks))  # runs again, once per tick
    assert at("2026-11-25 10:57") not in ticks  # skipped while paused, not caught up later
    assert at("2026-11-25 10:58") in ticks
    with Session(postgres_engine) as session:
        actions = [e.action for e in session.exec(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == ["pause", "resume"]


def test_run_now_is_a_manual_run_even_when_paused(
    postgres_engine: Engine, app_broker, app_worker, capsys
) -> None:
    probe_jobs.RUNS.clear()
    assert cli(capsys, "jobs", "pause", JOB, "--reason", "quiet")[0] == 0
    code, out, _ = cli(capsys, "jobs", "run", JOB, "--json")
    assert code == 0 and json.loads(out[0])["result"] == "sent"
    wait_for(lambda: runs_of(JOB), timeout_s=20, what="the manual run")
    app_broker.join(queues.MAINTENANCE, timeout=10_000)
    with Session(postgres_engine) as session:
        [run] = session.exec(select(ScheduledRun).where(ScheduledRun.job == JOB)).all()
    assert run.status == "succeeded" and (run.tick.second or run.tick.microsecond)
    code, out, _ = cli(capsys, "jobs", "--json")
    [row] = [json.loads(line) for line in out if json.loads(line)["job"] == JOB]
    assert (row["last_status"], row["last_manual"]) == ("succeeded", True)
    code, _, err = cli(capsys, "jobs", "run", "no_such_job")
    assert code == 2 and "unknown job 'no_such_job'" in err
    assert cli(capsys, "jobs", "resume", "no_such_job")[0] == 2
