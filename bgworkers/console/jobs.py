"""The periodic jobs as the console shows them: schedule, pause, last runs with durations."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from bgworkers.console.attempts import attempts_of, timeline
from bgworkers.scheduling.models import ScheduledJobState, ScheduledRun
from bgworkers.scheduling.pauses import JobPause, paused_jobs
from bgworkers.scheduling.periodic import CronPeriod


@dataclass(frozen=True)
class RunView:
    tick: datetime
    status: str
    duration_s: float | None
    manual: bool
    error: str | None


@dataclass(frozen=True)
class JobView:
    name: str
    cron: str
    purpose: str
    enabled: bool
    next_run: datetime | None
    pause: JobPause | None
    missed: int
    runs: list[RunView]  # oldest first, the last ``runs`` of :func:`job_views`

    @property
    def last(self) -> RunView | None:
        return self.runs[-1] if self.runs else None

    def as_dict(self) -> dict[str, Any]:
        last = self.last
        return {
            "job": self.name,
            "cron": self.cron,
            "enabled": self.enabled,
            "next_run": self.next_run.isoformat() if self.next_run and self.enabled else None,
            "paused": self.pause is not None,
            "paused_reason": self.pause.reason if self.pause else None,
            "paused_by": self.pause.paused_by if self.pause else None,
            "last_run": last.tick.isoformat() if last else None,
            "last_status": last.status if last else None,
            "last_duration_s": last.duration_s if last else None,
            "last_manual": last.manual if last else None,
            "missed": self.missed,
        }


def job_views(
    session: Session, periods: Iterable[CronPeriod], *, now: datetime, runs: int = 30
) -> list[JobView]:
    """One view per periodic job (``periods``: the broker's, see
    :func:`bgworkers.scheduling.middleware.broker_periods`)."""
    pauses = paused_jobs(session)
    views = []
    for period in periods:
        rows = _last_runs(session, period.name, runs)
        state = session.get(ScheduledJobState, period.name)
        views.append(
            JobView(
                name=period.name,
                cron=str(period),
                purpose=period.job.purpose,
                enabled=period.enabled,
                next_run=period.next_tick(now),
                pause=pauses.get(period.name),
                missed=state.missed_ticks if state else 0,
                runs=[_run_view(r) for r in reversed(rows)],
            )
        )
    return views


def print_jobs(views: list[JobView], out: TextIO, *, zone: ZoneInfo) -> None:
    """An aligned table, one line per job (``bgworkers jobs``)."""
    header = ("job", "cron", "next run", "last run", "outcome", "duration_s", "paused")
    lines = [header]
    for view in views:
        last = view.last
        lines.append(
            (
                view.name,
                view.cron,
                _when(view.next_run, zone) if view.enabled else "disabled",
                (_when(last.tick, zone) + (" (manual)" if last.manual else ""))
                if last
                else "never",
                last.status if last else "waiting for its first run",
                f"{last.duration_s:.3f}" if last and last.duration_s is not None else "-",
                f"{view.pause.reason} (by {view.pause.paused_by})" if view.pause else "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        out.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n")


def _when(instant: datetime | None, zone: ZoneInfo) -> str:
    return "-" if instant is None else instant.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _run_view(run: ScheduledRun) -> RunView:
    return RunView(run.tick, run.status, run.duration_s, is_manual_tick(run.tick), run.error)


def manual_tick(now: datetime) -> datetime:
    """The tick of a manual run: ``now``, never a whole minute."""
    if now.second == 0 and now.microsecond == 0:
        now += timedelta(microseconds=1)
    return now


def is_manual_tick(tick: datetime) -> bool:
    """Whether ``tick`` is a manual run's (see ``Console.run_job``)."""
    return bool(tick.second or tick.microsecond)


def duration_chart(runs: list[RunView], *, width: int = 180, height: int = 36) -> str:
    """A small inline SVG bar chart of run durations (seconds), oldest on the left.

    Bars of failed runs are red, manual runs blue; a run without a duration (still running,
    skipped) is a grey stub. Plain SVG markup from numbers only: safe to embed as is.
    """
    if not runs:
        return ""
    longest = max((r.duration_s or 0.0) for r in runs) or 1.0
    step = width / max(len(runs), 1)
    bars = []
    for index, run in enumerate(runs):
        value = run.duration_s or 0.0
        bar = max(2.0, (height - 2) * value / longest)
        colour = (
            "#c0392b"
            if run.status == "failed"
            else "#2e6fd8"
            if run.manual
            else "#888"
            if run.duration_s is None
            else "#2e8b57"
        )
        title = f"{run.tick:%Y-%m-%d %H:%M:%S} {run.status} {value:.3f} s"
        bars.append(
            f'<rect x="{index * step:.1f}" y="{height - bar:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{bar:.1f}" fill="{colour}"><title>{title}</title></rect>'
        )
    return (
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="durations of the last {len(runs)} runs">{"".join(bars)}</svg>'
    )


def job_run_timelines(session: Session, job: str, *, runs: int = 10) -> list[dict[str, Any]]:
    """The last ``runs`` runs of ``job``, newest first, each with its attempts' timeline.

    A run whose message never failed has no recorded attempt: its one attempt is the run
    itself, from claim to finish (see :mod:`bgworkers.console.attempts`).
    """
    return [_run_timeline(session, row) for row in _last_runs(session, job, runs)]


def _last_runs(session: Session, job: str, runs: int) -> Sequence[ScheduledRun]:
    query = select(ScheduledRun).where(ScheduledRun.job == job)
    return session.exec(query.order_by(col(ScheduledRun.tick).desc()).limit(runs)).all()


def _run_timeline(session: Session, run: ScheduledRun) -> dict[str, Any]:
    attempts = timeline(attempts_of(session, run.message_id)) if run.message_id else []
    if not attempts and run.finished_at is not None:
        attempts = [
            {
                "attempt": max(run.attempts, 1),
                "started_at": run.claimed_at.isoformat(),
                "duration_s": run.duration_s
                if run.duration_s is not None
                else (run.finished_at - run.claimed_at).total_seconds(),
                "waited_s": None,
                "outcome": run.status,
                "error": run.error or "",
            }
        ]
    return {
        "job": run.job,
        "tick": run.tick.isoformat(),
        "message_id": run.message_id,
        "status": run.status,
        "manual": is_manual_tick(run.tick),
        "claimed_at": run.claimed_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_s": run.duration_s,
        "waited_after_tick_s": round((run.claimed_at - run.tick).total_seconds(), 3),
        "error": run.error,
        "attempts": attempts,
    }
