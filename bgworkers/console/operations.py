"""What an operator can do, shared by the CLI and the web console; each action is audited.

:class:`Console` holds what the actions need (the settings, the broker to publish with, the
database engine, who acts and a clock), so the CLI, the web pages and the tests build one
with their own parts. Every change is recorded in the audit log in the same transaction as
the change itself. What each action does is in docs/console.md ("Commands").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dramatiq
from dramatiq.errors import ActorNotFound
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers.console import audit, xq
from bgworkers.console.attempts import attempts_of, timeline
from bgworkers.console.dead_letters import DeadLetterFilter, list_dead_letters
from bgworkers.console.jobs import (
    JobView,
    job_run_timelines,
    job_views,
    manual_tick,
)
from bgworkers.console.models import DeadLetter
from bgworkers.db.engine import session_scope, utcnow
from bgworkers.errors import BgworkersError, InvalidArguments
from bgworkers.scheduling.middleware import MANUAL_OPTION, TICK_OPTION, broker_periods, period_of
from bgworkers.scheduling.pauses import pause_job, resume_job
from bgworkers.settings import Settings
from bgworkers.tasks import argument_checker


class SendRefused(BgworkersError):
    """``send`` would enqueue something the worker cannot run; nothing was sent."""


class UnknownJob(SendRefused):
    """The name is not in the schedule table."""


@dataclass
class ActionResult:
    """What a requeue or purge did: ids handled, ids not found, whether the walk stopped short."""

    done: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    truncated: bool = False


@dataclass
class Console:
    settings: Settings
    broker: dramatiq.Broker
    engine: Engine
    who: str
    clock: Callable[[], datetime] = utcnow

    @property
    def broker_url(self) -> str:
        return self.settings.broker_url.get_secret_value()

    def session(self) -> AbstractContextManager[Session]:
        return session_scope(self.engine)

    def _audit(
        self,
        session: Session,
        action: str,
        target: str,
        detail: str = "",
        *,
        now: datetime | None = None,
    ) -> None:
        """Record an action of :attr:`who` in ``session``, the transaction of the change, at
        ``now`` (the time the change itself records, when it records one)."""
        at = now or self.clock()
        audit.record(session, who=self.who, action=action, target=target, detail=detail, now=at)

    # --- dead letters ---------------------------------------------------------------------
    def dead_letters(self, where: DeadLetterFilter) -> list[DeadLetter]:
        with self.session() as session:
            return list_dead_letters(session, where)

    def dead_letter(self, message_id: str) -> DeadLetter | None:
        with self.session() as session:
            return session.get(DeadLetter, message_id)

    def dead_letter_timeline(self, message_id: str) -> list[dict[str, Any]]:
        """Each recorded attempt of the message, oldest first."""
        with self.session() as session:
            return timeline(attempts_of(session, message_id))

    def jobs(self) -> list[JobView]:
        """Every periodic job of the broker, in declaration order, with its last runs."""
        with self.session() as session:
            return job_views(session, broker_periods(self.broker), now=self.clock())

    def job_runs(self, job: str, runs: int = 10) -> list[dict[str, Any]]:
        """The job's last runs, newest first, each with its attempts."""
        known_job(self.broker, job)
        with self.session() as session:
            return job_run_timelines(session, job, runs=runs)

    def requeue(self, message_ids: Iterable[str]) -> ActionResult:
        """Send indexed dead letters back to their queue, retries reset."""
        return self._by_queue(message_ids, self._requeue_queue)

    def requeue_all(self, queue: str) -> ActionResult:
        """Every dramatiq message in ``queue``'s XQ, indexed or not."""
        return self._requeue_queue(queue, None)

    def purge(self, message_ids: Iterable[str]) -> ActionResult:
        return self._by_queue(message_ids, self._purge_queue)

    def purge_all(self, queue: str) -> ActionResult:
        return self._purge_queue(queue, None)

    def _by_queue(
        self,
        message_ids: Iterable[str],
        action: Callable[[str, list[str]], ActionResult],
    ) -> ActionResult:
        by_queue: dict[str, list[str]] = defaultdict(list)
        result = ActionResult()
        with self.session() as session:
            for message_id in dict.fromkeys(message_ids):
                row = session.get(DeadLetter, message_id)
                if row is None or row.status != "dead":
                    result.not_found.append(message_id)
                else:
                    by_queue[row.queue].append(message_id)
        for queue, ids in by_queue.items():
            part = action(queue, ids)
            result.done += part.done
            result.not_found += part.not_found
            result.truncated |= part.truncated
        return result

    def _requeue_queue(self, queue: str, ids: list[str] | None) -> ActionResult:
        walk = xq.requeue(self.broker_url, queue, message_ids=ids, publish=self._publish)
        with self.session() as session:
            for message_id in walk.handled:
                self._audit(session, "requeue", message_id, f"queue={queue}")
        return self._result(walk, ids)

    def _publish(self, message: dramatiq.Message[Any]) -> None:
        """Mark the row requeued, then publish: the copy may run (and be marked processed,
        or dead again) before the walk ends, so the row must say "requeued" first."""
        self._set_status(message.message_id, "requeued", self.clock())
        try:
            self.broker.enqueue(message)
        except BaseException:  # even an interrupt: the index must not say "requeued"
            self._set_status(message.message_id, "dead", None)  # it goes back to the XQ
            raise

    def _set_status(self, message_id: str, status: str, requeued_at: datetime | None) -> None:
        with self.session() as session:
            row = session.get(DeadLetter, message_id, with_for_update=True)
            if row is not None:
                row.status, row.requeued_at = status, requeued_at or row.requeued_at
                session.add(row)

    def _purge_queue(self, queue: str, ids: list[str] | None) -> ActionResult:
        walk = xq.purge(self.broker_url, queue, message_ids=ids)
        now = self.clock()  # one time for the whole purge
        with self.session() as session:
            gone = set(walk.handled) | set(ids or ())  # indexed ids no longer in the XQ too
            for message_id in sorted(gone):
                row = session.get(DeadLetter, message_id)
                if row is not None:
                    session.delete(row)
            for message_id in walk.handled:
                self._audit(session, "purge", message_id, f"queue={queue}", now=now)
        return self._result(walk, ids)

    @staticmethod
    def _result(walk: xq.WalkResult, ids: list[str] | None) -> ActionResult:
        handled = set(walk.handled)
        missing = [] if ids is None else [i for i in ids if i not in handled]
        return ActionResult(walk.handled, missing, walk.truncated)

    # --- messages and jobs ----------------------------------------------------------------
    def send(self, actor_name: str, kwargs: dict[str, Any]) -> dramatiq.Message[Any]:
        """Check ``kwargs`` with the actor's own check, then enqueue them as given (JSON
        primitives, as any caller would send them); returns the message sent."""
        try:
            actor: dramatiq.Actor[Any, Any] = self.broker.get_actor(actor_name)
        except ActorNotFound:
            known = ", ".join(sorted(self.broker.get_declared_actors()))
            raise SendRefused(f"unknown actor {actor_name!r}; known actors: {known}") from None
        fn = getattr(actor.fn, "__wrapped__", actor.fn)  # @task wraps the function with its check
        try:
            argument_checker(fn)(**kwargs)
        except InvalidArguments as exc:
            raise SendRefused(f"bad arguments for {actor_name}: {exc}") from None
        message = actor.send_with_options(kwargs=kwargs)
        detail = f"message_id={message.message_id} arguments={sorted(kwargs)}"
        with self.session() as session:
            self._audit(session, "send", actor_name, detail)
        return message

    def pause(self, job: str, reason: str) -> bool:
        known_job(self.broker, job)
        now = self.clock()
        with self.session() as session:
            changed = pause_job(session, job=job, reason=reason, who=self.who, now=now)
            if changed:
                self._audit(session, "pause", job, reason, now=now)
        return changed

    def resume(self, job: str) -> bool:
        known_job(self.broker, job)
        with self.session() as session:
            changed = resume_job(session, job=job)
            if changed:
                self._audit(session, "resume", job)
        return changed

    def run_job(self, job: str) -> dramatiq.Message[Any]:
        """Run a periodic job now, outside its schedule (even when paused), under a tick of its
        own that no cron tick can equal (why: docs/console.md, ``bgworkers jobs run``)."""
        known_job(self.broker, job)
        actor = self.broker.get_actor(job)
        tick = manual_tick(self.clock())
        options: dict[str, Any] = {TICK_OPTION: tick.isoformat(), MANUAL_OPTION: True}
        message = actor.send_with_options(**options)
        with self.session() as session:
            self._audit(session, "run_job", job, f"message_id={message.message_id}")
        return message

    def record_login(self, *, ok: bool, client: str, throttled: bool = False) -> None:
        """Audit a login: ``login``, ``login_failed`` or ``login_throttled`` (refused unchecked,
        429)."""
        action = "login" if ok else "login_throttled" if throttled else "login_failed"
        with self.session() as session:
            self._audit(session, action, client)

    def audit_log(self, limit: int = 200) -> list[Any]:
        with self.session() as session:
            return audit.recent(session, limit=limit)


def known_job(broker: dramatiq.Broker, job: str) -> None:
    """Raise :class:`UnknownJob` unless ``job`` is a periodic actor of ``broker`` (the
    schedule table's, or one an application declares itself)."""
    if period_of(broker, job) is None:
        names = sorted(n for n in broker.get_declared_actors() if period_of(broker, n))
        raise UnknownJob(f"unknown job {job!r}; periodic jobs: {', '.join(names)}")
