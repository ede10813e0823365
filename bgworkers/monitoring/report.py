"""``bgworkers health``: what ``/readyz`` and the dashboards say, for a person at a terminal."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from sqlmodel import Session

from bgworkers.db.engine import get_engine, utcnow
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.loggers import redact_text
from bgworkers.maintenance.heartbeat import SOURCE
from bgworkers.maintenance.models import SchedulerHeartbeat
from bgworkers.monitoring.health import CheckResult, DeadlineCheck, deadline_checks, run_checks
from bgworkers.monitoring.queue_depth import NOT_DECLARED, QueueDepth, read_depths_amqp
from bgworkers.processes.diagnosis import quiet_pika
from bgworkers.scheduling.pauses import paused_jobs
from bgworkers.settings import Settings

#: A heartbeat older than this (seconds) means the scheduler or the workers are not running.
STALE_HEARTBEAT_S = 300
#: An unpublished outbox message due longer ago than this (seconds): the relay is not working.
STALE_OUTBOX_S = 300


def heartbeat_age_s(settings: Settings, *, now: datetime) -> float | None:
    with Session(get_engine(settings)) as session:
        row = session.get(SchedulerHeartbeat, SOURCE)
    if row is None or row.scheduled_at is None:
        return None
    return (now - row.scheduled_at).total_seconds()


def _outbox_line(settings: Settings, out: TextIO, *, now: datetime) -> list[str]:
    from bgworkers.outbox.metrics import read_backlog_now

    try:
        backlog = read_backlog_now(settings, now=now)
    except Exception as exc:  # noqa: BLE001 - a report line, not a crash (e.g. not migrated)
        error = redact_text(failure_reason(exc))[:200]
        out.write(f"outbox       FAILING  {error}\n")
        return [f"outbox: cannot read the outbox table ({error}); run `bgworkers migrate`?"]
    stale = backlog.oldest_age_s > STALE_OUTBOX_S
    out.write(
        f"outbox       {'BACKLOG' if stale else 'ok':<8} {backlog.count} unpublished, "
        f"oldest due {backlog.oldest_age_s:.0f} s ago\n"
    )
    if not stale:
        return []
    return [
        f"outbox: the oldest unpublished message has been due {backlog.oldest_age_s:.0f} s "
        f"(more than {STALE_OUTBOX_S} s); is a worker group running its relay, and RabbitMQ "
        "up? The rows' last_error says why publishing fails (docs/outbox.md)"
    ]


def print_health(settings: Settings, out: TextIO, *, now: datetime | None = None) -> int:
    """Print every check; return 0 when all are healthy, 1 otherwise (for scripts).

    The verdict ends with one line per failing check, saying why and what to do, so "NOT
    healthy" is never the whole answer. Bounded in time (docs/monitoring.md): a service that
    hangs gives a FAILING line, not a command that hangs.
    """
    problems: list[str] = []
    timeout = settings.readiness_timeout_s
    checks = run_checks(deadline_checks(settings, schema=True))
    for check in checks:
        out.write(f"{check.name:<12} {'ok' if check.ok else 'FAILING':<8} {check.detail}\n")
        if not check.ok:
            problems.append(f"{check.name}: {check.detail}")
    if checks[1].ok:
        problems += _bounded(
            "database", lambda buffer: _database_lines(settings, buffer, now=now), out, timeout
        )
    if checks[0].ok:
        problems += _bounded(
            "queues", lambda buffer: _queue_lines(settings, buffer), out, timeout * 2
        )
    if not problems:
        out.write("\nhealthy\n")
        return 0
    out.write(f"\nNOT healthy ({len(problems)} failing check{'s' if len(problems) > 1 else ''}):\n")
    for problem in problems:
        out.write(f"  - {problem}\n")
    return 1


def _bounded(
    name: str, section: Callable[[TextIO], list[str]], out: TextIO, timeout_s: float
) -> list[str]:
    """Run a report section on a thread; print its lines, or one FAILING line at the deadline."""
    buffer = io.StringIO()
    check = DeadlineCheck(
        name,
        lambda: CheckResult(name, True, "\n".join(section(buffer))),
        timeout_s=timeout_s,
    )
    check.start()
    result = check.wait()
    if not result.ok:
        out.write(f"{name:<12} FAILING  {result.detail}\n")
        return [f"{name}: {result.detail}"]
    out.write(buffer.getvalue())
    return [line for line in result.detail.split("\n") if line]


def _database_lines(settings: Settings, out: TextIO, *, now: datetime | None) -> list[str]:
    problems = _scheduler_line(settings, out, now=now or utcnow())
    with Session(get_engine(settings)) as session:
        paused = paused_jobs(session)
    if paused:  # deliberate, so not unhealthy; but an operator must see it
        listed = ", ".join(f"{job} ({pause.reason})" for job, pause in paused.items())
        out.write(f"paused       {len(paused):<8} {listed}\n")
    return problems + _outbox_line(settings, out, now=now or utcnow())


def _scheduler_line(settings: Settings, out: TextIO, *, now: datetime) -> list[str]:
    age = heartbeat_age_s(settings, now=now)
    if age is None:
        out.write("scheduler    UNKNOWN  no heartbeat recorded yet\n")
        return [
            "scheduler: no heartbeat recorded yet; is `periodiq bgworkers` running, and a worker "
            "on the maintenance queue? (a fresh install records one within a minute)"
        ]
    stale = age > STALE_HEARTBEAT_S
    out.write(f"scheduler    {'STALE' if stale else 'ok':<8} last heartbeat tick {age:.0f} s ago\n")
    if not stale:
        return []
    return [
        f"scheduler: last heartbeat {age:.0f} s ago (more than {STALE_HEARTBEAT_S} s); check "
        "that `periodiq bgworkers` and a worker on the maintenance queue are running"
    ]


def _queue_lines(settings: Settings, out: TextIO) -> list[str]:
    # AMQP, not the management API: its counts are exact now, the API's lag a few seconds.
    url, timeout = settings.broker_url.get_secret_value(), settings.readiness_timeout_s
    try:
        with quiet_pika():
            depths = read_depths_amqp(url, timeout_s=timeout)
    except Exception as exc:  # noqa: BLE001 - a report line, not a crash, whatever failed
        error = redact_text(f"{type(exc).__name__}: {exc}")
        out.write(f"queues       FAILING  {error}\n")
        return [f"queues: could not read the queue depths ({error})"]
    return depth_lines(depths, out)


def depth_lines(depths: list[QueueDepth], out: TextIO) -> list[str]:
    """The queues' table; a problem per queue holding dead letters. A queue RabbitMQ does not
    have yet says so, not zeros, and is no problem: a fresh install has none until it runs."""
    out.write("\nqueue        ready  delayed  dead letters\n")
    problems = []
    for depth in depths:
        counts = f"{depth.ready:>5}  {depth.delayed:>7}  {depth.dead_letters:>12}"
        out.write(f"{depth.queue:<12} {counts if depth.declared else NOT_DECLARED}\n")
        if depth.dead_letters:
            problems.append(
                f"queue {depth.queue}: {depth.dead_letters} dead-lettered message(s) in "
                f"{depth.queue}.XQ; the worker log's message_processed lines with outcome "
                "dead_lettered say why (docs/monitoring.md: requeue or purge them)"
            )
    return problems
