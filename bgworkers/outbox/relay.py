"""The relay: publish outbox rows in batches, mark them published only once delivered.

docs/outbox.md ("The relay", "Delivery guarantees") describes a round, the overlap of
:meth:`Relay.drain`, the failure backoff and the lease. Only the lease holder publishes, which
keeps publishing in order per queue; on SQLite the lease is the only guard: run one group.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from bgworkers.db.engine import insert_if_absent, utcnow
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.intervals import LogInterval
from bgworkers.logs.loggers import get_logger
from bgworkers.outbox.api import RELAY_WAKEUP
from bgworkers.outbox.metrics import OUTBOX_METRICS
from bgworkers.outbox.models import OutboxMessage, OutboxRelayLease
from bgworkers.outbox.publishers import Outgoing, Publisher, PublishError
from bgworkers.outbox.wakeup import LISTEN_TIMEOUT_S, listen
from bgworkers.tracing.spans import publish_span

log = get_logger(__name__)

LEASE_NAME = "relay"
_TABLE = OutboxMessage.__table__  # type: ignore[attr-defined]
MAX_BACKOFF_S = 5.0
#: Seconds between two lines about the same streak of failures.
FAILURE_LOG_INTERVAL_S = 60.0
PRUNE_EVERY = timedelta(minutes=1)
PRUNE_CHUNK = 5_000


@dataclass
class RelayConfig:
    """Units: seconds unless named otherwise."""

    batch_size: int = 5_000
    poll_interval_s: float = 0.5
    lease_s: float = 15.0
    use_lease: bool = True
    retention: timedelta = timedelta(hours=72)
    #: PostgreSQL ends a batch's transaction left idle this long (default: twice the lease).
    claim_idle_timeout_s: float | None = None
    holder: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"[:200]
    )


class Relay:
    """Moves outbox rows to the broker; :meth:`run` loops until ``stop`` is set."""

    def __init__(
        self,
        *,
        engine: Callable[[], Engine],
        publisher: Publisher,
        config: RelayConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        wakeup: threading.Event = RELAY_WAKEUP,
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self.config = config or RelayConfig()
        self._clock = clock
        self._wakeup = wakeup
        self._lease_until: datetime | None = None
        self._next_prune = clock()
        # The database thread of drain(); it starts at the first batch.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-db")

    # --- batches -------------------------------------------------------------------------

    def _claim(self, *, after: int = 0) -> _Claim | None:
        """Read (and on PostgreSQL lock) the next due rows with ``id > after``.

        The transaction holds its rows' locks while the batch is published; PostgreSQL ends it
        once idle for ``claim_idle_timeout_s``, so a relay that stops answering does not hold
        them for hours (why: docs/outbox.md, "Delivery guarantees").
        """
        now = self._clock()
        idle_s = self.config.claim_idle_timeout_s
        if idle_s is None:
            idle_s = 2 * self.config.lease_s
        session = Session(self._engine())
        try:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(
                    select(
                        func.set_config(
                            "idle_in_transaction_session_timeout",
                            str(int(idle_s * 1000)),
                            True,  # this transaction only
                        )
                    )
                )
            rows = session.execute(
                select(_TABLE.c.id, _TABLE.c.queue, _TABLE.c.message_id, _TABLE.c.body)
                .add_columns(_TABLE.c.available_at)
                .where(_TABLE.c.published_at.is_(None), _TABLE.c.id > after)
                .order_by(_TABLE.c.id)
                .limit(self.config.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
        except BaseException:  # even an interrupt: the session and its row locks go
            session.close()
            raise
        if not rows:
            session.close()
            return None
        batch = [
            Outgoing(queue, message_id, body.encode("utf-8"), _eta_ms(available_at, now))
            for _, queue, message_id, body, available_at in rows
        ]
        return _Claim(session=session, ids=[row[0] for row in rows], batch=batch)

    def _mark(self, claim: _Claim) -> int:
        """Mark a confirmed batch published and commit (releasing its row locks)."""
        with claim.session as session:
            session.execute(
                update(_TABLE)
                .where(_TABLE.c.id.in_(claim.ids))
                .values(published_at=self._clock(), attempts=_TABLE.c.attempts + 1)
            )
            session.commit()
        published = OUTBOX_METRICS.get().published
        for queue, count in Counter(item.queue for item in claim.batch).items():
            published.labels(queue).inc(count)
        return len(claim.ids)

    def _publish(self, claim: _Claim) -> None:
        try:
            with publish_span(claim.batch):
                self._publisher.publish(claim.batch)
        except PublishError as exc:
            claim.session.close()  # rolls back: the rows stay due
            self._record_failure(claim.ids, str(exc))
            raise

    def publish_batch(self) -> int:
        """Publish one batch; return how many rows were published (0: nothing due)."""
        claim = self._claim()
        if claim is None:
            return 0
        self._publish(claim)
        return self._mark(claim)

    def drain(self, *, max_batches: int = 50) -> int:
        """Publish due rows batch after batch; return how many rows were published.

        While a batch is published, a database thread reads the next one and marks the
        previous one: a relay killed here re-publishes up to two batches.
        """
        # Stop in time to renew the lease: a long drain must not outlive it.
        deadline = time.monotonic() + self.config.lease_s / 3
        claim = self._claim()
        marking: Future[int] | None = None
        total = 0
        try:
            for _ in range(max_batches):
                if claim is None or time.monotonic() > deadline:
                    break
                following = self._pool.submit(self._claim, after=claim.ids[-1])
                try:
                    self._publish(claim)
                except BaseException:  # even an interrupt: the next batch's claim is dropped
                    _discard(following)
                    raise
                if marking is not None:
                    total += marking.result()
                marking = self._pool.submit(self._mark, claim)
                claim = None  # the database thread owns it now
                claim = following.result()
        finally:
            if claim is not None:
                claim.session.close()
            if marking is not None:
                total += marking.result()
        return total

    def close(self) -> None:
        """Close the publisher and stop the database thread, for good: a closed relay is not
        used again (the middleware and ``python -m bgworkers.outbox`` build a new one)."""
        self._publisher.close()
        self._pool.shutdown(wait=True)

    def _record_failure(self, ids: list[int], error: str) -> None:
        OUTBOX_METRICS.get().publish_failures.inc()
        try:
            with Session(self._engine()) as session:
                session.execute(
                    update(_TABLE)
                    .where(_TABLE.c.id.in_(ids))
                    .values(attempts=_TABLE.c.attempts + 1, last_error=error[:500])
                )
                session.commit()
        except SQLAlchemyError as exc:
            log.warning("outbox_failure_not_recorded", error=f"{type(exc).__name__}: {exc}")

    # --- lease ---------------------------------------------------------------------------

    def hold_lease(self) -> bool:
        """Take or renew the lease; True while this relay may publish."""
        if not self.config.use_lease:
            return True
        now = self._clock()
        if self._lease_until is not None and now < self._lease_until - timedelta(
            seconds=self.config.lease_s * 2 / 3
        ):
            return True  # renewed less than a third of the lease ago
        until = now + timedelta(seconds=self.config.lease_s)
        holder = self.config.holder
        with Session(self._engine()) as session:
            taken = insert_if_absent(
                session, OutboxRelayLease, name=LEASE_NAME, holder=holder, expires_at=until
            ) or bool(
                session.execute(
                    update(OutboxRelayLease)
                    .where(
                        OutboxRelayLease.name == LEASE_NAME,  # type: ignore[arg-type]
                        (OutboxRelayLease.holder == holder)  # type: ignore[arg-type]
                        | (OutboxRelayLease.expires_at <= now),
                    )
                    .values(holder=holder, expires_at=until)
                ).rowcount  # type: ignore[attr-defined]
            )
            session.commit()
        if taken and self._lease_until is None:
            log.info("outbox_relay_leader", holder=holder)
        self._lease_until = until if taken else None
        return taken

    def release_lease(self) -> None:
        if not self.config.use_lease or self._lease_until is None:
            return
        self._lease_until = None
        with Session(self._engine()) as session:
            session.execute(
                update(OutboxRelayLease)
                .where(OutboxRelayLease.holder == self.config.holder)  # type: ignore[arg-type]
                .values(expires_at=self._clock())
            )
            session.commit()

    # --- pruning -------------------------------------------------------------------------

    def prune(self) -> int:
        """Delete rows published longer than the retention ago, in chunks; return how many."""
        cutoff = self._clock() - self.config.retention
        total = 0
        while True:
            with Session(self._engine()) as session:
                ids = list(
                    session.scalars(
                        select(_TABLE.c.id)
                        .where(_TABLE.c.published_at.is_not(None), _TABLE.c.published_at < cutoff)
                        .limit(PRUNE_CHUNK)
                    )
                )
                if ids:
                    session.execute(delete(_TABLE).where(_TABLE.c.id.in_(ids)))
                    session.commit()
            total += len(ids)
            if len(ids) < PRUNE_CHUNK:
                break
        if total:
            OUTBOX_METRICS.get().pruned.inc(total)
            log.info("outbox_pruned", rows=total)
        return total

    # --- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Publish until ``stop`` is set; never raises (errors are logged and retried).

        A failure that persists (the database or RabbitMQ away) is logged when it starts, then
        at most once a minute with how many attempts failed, and once more when it ends.
        """
        backoff = 0.0
        streak = _FailureStreak(time.monotonic)
        listener = self._listen(stop)
        while not stop.is_set():
            try:
                if not self.hold_lease():
                    stop.wait(self.config.lease_s / 3)
                    continue
                self._wakeup.clear()  # a commit from now on wakes the wait below
                published = self.drain()
                if self._clock() >= self._next_prune:
                    self._next_prune = self._clock() + PRUNE_EVERY
                    self.prune()
                backoff = 0.0
                streak.ended()
            except (PublishError, SQLAlchemyError) as exc:
                backoff = min(max(backoff * 2, 0.25), MAX_BACKOFF_S)
                streak.failed(failure_reason(exc)[:500], retry_in_s=backoff)
                stop.wait(backoff)
                continue
            except Exception:  # a dead relay thread would stop all delivery: log, go on
                log.exception("outbox_relay_crashed")
                backoff = MAX_BACKOFF_S
                stop.wait(backoff)
                continue
            if published == 0:
                self._wakeup.wait(self.config.poll_interval_s)
        if listener is not None:
            listener.join(timeout=LISTEN_TIMEOUT_S * 2)
        self.close()
        try:
            self.release_lease()
        except SQLAlchemyError as exc:
            log.warning("outbox_lease_not_released", error=failure_reason(exc))

    def _listen(self, stop: threading.Event) -> threading.Thread | None:
        """On PostgreSQL, a thread that wakes this relay at commits in other processes too."""
        try:
            engine = self._engine()
        except SQLAlchemyError as exc:  # no engine yet: the loop reports it; polling still works
            log.warning("outbox_listener_not_started", error=failure_reason(exc))
            return None
        if engine.dialect.name != "postgresql":
            return None
        thread = threading.Thread(
            target=listen, args=(engine, self._wakeup, stop), name="outbox-listener", daemon=True
        )
        thread.start()
        return thread


class _FailureStreak:
    """One ``outbox_relay_failed`` line per :data:`FAILURE_LOG_INTERVAL_S` while failing."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._failures = 0
        self._notices = LogInterval(FAILURE_LOG_INTERVAL_S, clock=clock)

    def failed(self, error: str, *, retry_in_s: float) -> None:
        self._failures += 1
        if not self._notices.due():
            return
        log.warning(
            "outbox_relay_failed", error=error, retry_in_s=retry_in_s, failures=self._failures
        )

    def ended(self) -> None:
        if self._failures:
            log.info("outbox_relay_recovered", failures=self._failures)
            self._failures = 0
            self._notices.reset()  # the next streak's first failure is logged at once


@dataclass
class _Claim:
    """A batch read in its own transaction, which holds the rows' locks until marked."""

    session: Session
    ids: list[int]
    batch: list[Outgoing]


def _discard(claim: Future[_Claim | None]) -> None:
    """Release a batch read ahead that will not be published now."""
    with contextlib.suppress(Exception):  # its own error, if any, is moot: nothing was sent
        found = claim.result()
        if found is not None:
            found.session.close()


def _eta_ms(available_at: datetime, now: datetime) -> int | None:
    if available_at.tzinfo is None:  # SQLite through a Core select keeps the column type
        available_at = available_at.replace(tzinfo=UTC)
    if available_at <= now:
        return None
    return int(available_at.timestamp() * 1000)
