"""Pausing a periodic job: stored in the database, so every scheduler and worker sees it.

Why on the worker side: periodiq schedulers (two of them, for availability) know nothing of
each other or of the database; every tick they send goes through the worker's
:class:`~bgworkers.scheduling.middleware.ScheduleGuard`, which skips the tick of a paused job
(``reason="paused"``) before claiming it. The catch-up job leaves paused jobs out, so a tick
skipped by a pause is neither re-sent nor counted as missed after the job resumes. A run asked
for by hand (``bgworkers jobs run``) still runs: it is an operator's explicit decision.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, Session, SQLModel, col, select

from bgworkers.db.engine import UtcDateTime


class JobPause(SQLModel, table=True):
    """A paused periodic job; the row's existence is the pause."""

    __tablename__ = "scheduled_job_pauses"

    job: str = Field(primary_key=True, max_length=100)
    paused_at: datetime = Field(sa_type=UtcDateTime)
    paused_by: str = Field(max_length=200)
    reason: str = Field(max_length=500)


def pause_job(session: Session, *, job: str, reason: str, who: str, now: datetime) -> bool:
    """Pause ``job``; False (and nothing changed) when it was paused already."""
    if session.get(JobPause, job) is not None:
        return False
    session.add(JobPause(job=job, paused_at=now, paused_by=who[:200], reason=reason[:500]))
    return True


def resume_job(session: Session, *, job: str) -> bool:
    """Resume ``job``; False when it was not paused."""
    pause = session.get(JobPause, job)
    if pause is None:
        return False
    session.delete(pause)
    return True


def paused_jobs(session: Session) -> dict[str, JobPause]:
    """Every pause, by job name."""
    return {p.job: p for p in session.exec(select(JobPause).order_by(col(JobPause.job)))}
