"""``bgworkers health``: what ``/readyz`` and the dashboards say, for a person at a terminal."""

from __future__ import annotations

from datetime import datetime
from typing import TextIO

from sqlmodel import Session

from bgworkers.db import get_engine, utcnow
from bgworkers.logs import redact_text
from bgworkers.maintenance.heartbeat import SOURCE
from bgworkers.maintenance.models import SchedulerHeartbeat
from bgworkers.monitoring.health import check_broker, check_database
from bgworkers.monitoring.queue_depth import QueueDepth, read_depths_amqp
from bgworkers.scheduling.pauses import paused_jobs
from bgworkers.settings import Settings

#: A heartbeat older than this (seconds) means the scheduler or the workers are not running.
STALE_HEARTBEAT_S = 300


def heartbeat_age_s(settings: Settings, *, now: datetime) -> float | None:
    with Session(get_engine(settings)) as session:
        row = session.get(SchedulerHeartbeat, SOURCE)
    if row is None or row.scheduled_at is None:
        return None
    return (now - row.scheduled_at).total_seconds()


def print_health(settings: Settings, out: TextIO, *, now: datetime | None = None) -> int:
    """Print every check; return 0 when all are healthy, 1 otherwise (for scripts)."""
    healthy = True
    checks = [check_broker(settings), check_database(settings)]
    for check in checks:
        healthy &= check.ok
        out.write(f"{check.name:<12} {'ok' if check.ok else 'FAILING':<8} {check.detail}\n")
    if checks[1].ok:
        age = heartbeat_age_s(settings, now=now or utcnow())
        if age is None:
            out.write("scheduler    UNKNOWN  no heartbeat recorded yet\n")
            healthy = False
        else:
            stale = age > STALE_HEARTBEAT_S
            healthy &= not stale
            state = "STALE" if stale else "ok"
            out.write(f"scheduler    {state:<8} last heartbeat tick {age:.0f} s ago\n")
        with Session(get_engine(settings)) as session:
            paused = paused_jobs(session)
        if paused:  # deliberate, so not unhealthy; but an operator must see it
            listed = ", ".join(f"{job} ({pause.reason})" for job, pause in paused.items())
            out.write(f"paused       {len(paused):<8} {listed}\n")
    if checks[0].ok:
        # AMQP, not the management API: its counts are exact now, the API's lag a few seconds.
        try:
            depths: list[QueueDepth] = read_depths_amqp(settings.broker_url.get_secret_value())
        except Exception as exc:  # noqa: BLE001 - a report line, not a crash, whatever failed
            out.write(f"queues       FAILING  {redact_text(f'{type(exc).__name__}: {exc}')}\n")
            depths = []
            healthy = False
        out.write("\nqueue        ready  delayed  dead letters\n")
        for depth in depths:
            row = f"{depth.queue:<12} {depth.ready:>5}  {depth.delayed:>7}"
            out.write(f"{row}  {depth.dead_letters:>12}\n")
            healthy &= depth.dead_letters == 0
    out.write(f"\n{'healthy' if healthy else 'NOT healthy'}\n")
    return 0 if healthy else 1
