"""A finished run of a periodic job, written as the scheduling guard records one (claim, then
finish), for tests that read job health: the console's overview, ``bgworkers schedule``."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from bgworkers.db.engine import session_scope
from bgworkers.scheduling.claims import claim_run, finish_run


def record_run(
    job: str, tick: datetime, status: str, duration_s: float = 0.1, *, engine: Engine | None = None
) -> None:
    """``job``'s run for ``tick``, claimed and finished at ``tick`` with ``status`` (in the
    process's database, or ``engine``'s)."""
    message_id = f"{job}-{tick.isoformat()}"
    with session_scope(engine) as session:
        claim_run(
            session=session,
            job=job,
            tick=tick,
            message_id=message_id,
            cron="",
            now=tick,
            stale_after=timedelta(minutes=5),
        )
    with session_scope(engine) as session:
        finish_run(
            session=session,
            job=job,
            tick=tick,
            message_id=message_id,
            status=status,
            now=tick,
            duration_s=duration_s,
        )
