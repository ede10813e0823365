"""Counting what firing did, once its transaction commits.

Why its own module: the counting rule (at the commit, never for a rolled-back transaction)
is one thing to read, apart from how reminders are fired (:mod:`bgworkers.reminders.firing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from sqlmodel import Session

from bgworkers.db.engine import after_commit
from bgworkers.logs.loggers import get_logger
from bgworkers.reminders.metrics import REMINDER_METRICS

if TYPE_CHECKING:
    from bgworkers.reminders.firing import Failure, Firing

log = get_logger(__name__)


@dataclass
class Tally:
    """What one transaction fired, skipped and closed as failed, counted (and the skips and
    failures logged) when it commits; nothing if it rolls back.

    Why at the commit: a page whose INSERT or commit fails is rolled back and split, and each
    of its per-item messages counts and logs its reminder again; counted as the page went, a
    reminder of a split page was counted twice, and ``reminder_failed`` logged twice. One
    commit callback per transaction, not one per reminder: this is the page's hot path.
    """

    now: datetime
    fired: list[Firing] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    skipped: list[tuple[str, int]] = field(default_factory=list)
    missing: int = 0  # ids of a page that match no reminder (deleted): counted, not logged

    @classmethod
    def on_commit(cls, session: Session, now: datetime) -> Tally:
        """A tally recorded when ``session``'s current transaction commits."""
        tally = cls(now)
        after_commit(session, tally.record)
        return tally

    def skip(self, reason: str, reminder_id: int) -> Literal["skipped"]:
        self.skipped.append((reason, reminder_id))
        return "skipped"

    def record(self) -> None:
        metrics = REMINDER_METRICS.get()
        if self.missing:
            metrics.skipped.labels("missing").inc(self.missing)
        for reason, reminder_id in self.skipped:
            metrics.skipped.labels(reason).inc()
            log.info("reminder_not_fired", reminder_id=reminder_id, reason=reason)
        for failure in self.failed:
            metrics.failed.inc()
            log.error("reminder_failed", reminder_id=failure.reminder_id, error=failure.problem)
        for firing in self.fired:
            metrics.fired.labels("true" if firing.recurring else "false").inc()
            metrics.delay.observe(max((self.now - firing.occurrence).total_seconds(), 0))
