"""Provider rate limits shared by every worker process on every host, kept in the database.

Why the database: every worker already talks to it, and one row per credential updated in a
locked transaction is all a limiter needs; no extra server. Each request reserves the next
free slot of every limit it is subject to (its credential's, and the provider's optional
global cap) and sleeps until that slot: the slot is ``max(now, next_at, paused_until)`` over
those rows, and each row's ``next_at`` moves to ``slot + 1 / rate``. Requests of one
credential are so spaced at least ``1 / rate`` seconds apart however many processes send them:
no burst, and no hand-division of the rate by the number of processes. Times come from the
database server's clock (PostgreSQL), so hosts with skewed clocks agree.

A ``429`` (or Google's rate-limit ``403``) pauses the credential for every process until the
server's ``Retry-After``: :meth:`CredentialThrottle.pause` writes ``paused_until``. A request of
a credential paused for longer than its longest interval is refused without reserving anything,
whether it asks alone or in a calendar page's reservation (:meth:`SlotStore.reserve_many`): a
reserved slot would move the provider's global cap past the pause too, holding every other
credential until it ends.

When the store cannot be reached, each process falls back to a local limiter at
``BGW_RATE_LIMIT_FALLBACK_SHARE`` of each rate (conservative: several processes may be in the
same state), logs that once, and tries the store again after :data:`RETRY_STORE_AFTER_S`.
The fallback holds a 429's pause in this process only, and treats it as the store does: a
request of a paused credential raises :class:`RateLimitedLater` instead of sleeping through
the pause. Sync never stops for the limiter.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from bgworkers.errors import TransientError
from bgworkers.logs.loggers import get_logger
from bgworkers.sync.models import RateLimitSlot
from bgworkers.sync.ratelimit import RateLimiter

log = get_logger(__name__)

#: Seconds between attempts to use the store again after it failed.
RETRY_STORE_AFTER_S = 5.0
#: Keys a process remembers having a row (so it skips the insert); about 100 bytes each.
_KNOWN_KEYS_MAX = 100_000


class RateLimitedLater(TransientError):
    """The credential is paused (the provider answered 429), or its next slot is further away
    than a worker thread should sleep: the run hands its work back to the broker for
    ``retry_after_s`` seconds later instead of holding a thread through the wait (a far slot
    stays reserved, so nothing bursts; a paused credential reserves none)."""


class Throttle(Protocol):
    """What a provider client needs of a limiter: wait for a slot, pause after a 429."""

    def acquire(self) -> float:
        """Wait for the next slot; return the seconds waited."""
        ...

    def pause(self, seconds: float) -> None:
        """No request before ``seconds`` from now (the server's ``Retry-After``)."""
        ...


@dataclass(frozen=True)
class PageSlot:
    """One request's part of a page's reservation: its slot is ``wait_s`` seconds away; or,
    when ``paused``, nothing was reserved and ``wait_s`` is the rest of its credential's
    pause (the request goes on after it, in a message of its own)."""

    wait_s: float
    paused: bool = False


@dataclass(frozen=True)
class Limit:
    """One rate: ``rate_per_s`` requests per second for everything that shares ``key``."""

    key: str
    rate_per_s: float

    @property
    def interval_s(self) -> float:
        return 1.0 / self.rate_per_s


def credential_key(provider: str, credential: str) -> str:
    """A store key for a credential: the provider and a hash, never the secret itself."""
    digest = hashlib.sha256(credential.encode("utf-8")).hexdigest()[:32]
    return f"{provider}:token:{digest}"


class SlotStore:
    """Reserves and pauses slots in ``rate_limit_slots`` through ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._known: set[str] = set()
        self._postgres = engine.dialect.name == "postgresql"
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    def reserve(
        self, limits: Sequence[Limit], *, refuse_paused_over_s: float | None = None
    ) -> float:
        """Reserve the next slot common to ``limits``; return the seconds until it.

        ``refuse_paused_over_s``: when a key's pause has longer than that to run, reserve
        nothing and raise :class:`RateLimitedLater` with the rest of the pause (None: a pause
        only delays the slot).

        A row this process remembers may have been pruned since (:func:`prune_idle_rows`):
        a reservation that moved fewer rows than it has keys is redone after inserting them,
        so a pruned credential is never left unlimited.
        """
        keys = sorted({limit.key for limit in limits})
        hold_s = math.inf if refuse_paused_over_s is None else refuse_paused_over_s
        for _ in range(2):
            if self._postgres:
                moved, wait = self._reserve_postgres(limits, keys, hold_s)
            else:
                with self.engine.begin() as conn:
                    self._ensure_rows(conn, keys)
                    moved, wait = _reserve_sqlite(conn, limits, keys, hold_s)
            if moved == len(keys):
                return wait
            self._known.difference_update(keys)
        raise SQLAlchemyError(f"rate limit rows {keys} could not be created")

    def _reserve_postgres(
        self, limits: Sequence[Limit], keys: list[str], hold_s: float
    ) -> tuple[int, float]:
        """Autocommit: the reservation is one statement, atomic by itself, so it needs no
        BEGIN and COMMIT around it (two round trips of three, per request). Should a row be
        missing, the rows that were there moved one interval: that only spaces requests more."""
        with self._autocommit.connect() as conn:
            self._ensure_rows(conn, keys)
            return _reserve_postgres(conn, limits, keys, hold_s)

    def reserve_many(self, requests: Sequence[Sequence[Limit]]) -> list[PageSlot]:
        """Reserve one slot for each of ``requests`` (each under its own limits), in their
        order, in one transaction; return each one's :class:`PageSlot`.

        For a page of requests: the rows are read locked in one statement and written in one,
        where :meth:`reserve` per request was a transaction each on the same hot rows (the
        project's cap is one row every request locks). A request whose keys are paused for
        longer than its longest interval reserves nothing, as in :meth:`reserve`.
        """
        if not self._postgres:
            return [self._reserve_or_paused(limits) for limits in requests]
        keys = sorted({limit.key for limits in requests for limit in limits})
        with self.engine.begin() as conn:
            self._ensure_rows(conn, keys)
            rows = conn.execute(_LOCK_POSTGRES, {"keys": keys}).all()
            missing = set(keys) - {row.key for row in rows}
            if missing:  # known here, but inserted by a transaction not committed then
                self._insert_rows(conn, sorted(missing))
                rows = conn.execute(_LOCK_POSTGRES, {"keys": keys}).all()
            now = max(float(row.now_s) for row in rows)  # the last lock's clock: after all
            next_at = {row.key: float(row.next_at) for row in rows}
            paused_until = {row.key: float(row.paused_until) for row in rows}
            spent = dict.fromkeys(next_at, 0.0)
            slots = []
            for limits in requests:
                paused_s = max(paused_until[limit.key] for limit in limits) - now
                if paused_s > _longest_interval_s(limits):
                    slots.append(PageSlot(paused_s, paused=True))  # its rows are not moved
                    continue
                ends = (max(next_at[x.key], paused_until[x.key]) for x in limits)
                slot = max(now, *ends)
                for limit in limits:
                    next_at[limit.key] = slot + limit.interval_s
                    spent[limit.key] += slot - now
                slots.append(PageSlot(slot - now))
            conn.execute(
                _MOVE_POSTGRES,
                {"keys": keys, "next_at": [next_at[k] for k in keys],
                 "waited": [spent[k] for k in keys]},
            )  # fmt: skip
        return slots

    def _reserve_or_paused(self, limits: Sequence[Limit]) -> PageSlot:
        """:meth:`reserve` for one request of a page, a refusal as its :class:`PageSlot`."""
        try:
            return PageSlot(self.reserve(limits, refuse_paused_over_s=_longest_interval_s(limits)))
        except RateLimitedLater as refused:
            return PageSlot(float(refused.retry_after_s or 0.0), paused=True)

    def paused_for(self, keys: Sequence[str]) -> float:
        """Seconds until the latest pause of ``keys`` ends (0 when none is paused)."""
        with self.engine.begin() as conn:
            now = self._now(conn)
            until = conn.execute(
                select(func.max(col(RateLimitSlot.paused_until))).where(
                    col(RateLimitSlot.key).in_(keys)
                )
            ).scalar_one()
        return max(float(until or 0.0) - now, 0.0)

    def paused_keys(self, keys: Sequence[str]) -> dict[str, float]:
        """The keys of ``keys`` paused now, with the seconds until each pause ends; one
        statement (a page asks this for all its credentials at once)."""
        with self.engine.begin() as conn:
            now = self._now(conn)
            rows = conn.execute(
                select(col(RateLimitSlot.key), col(RateLimitSlot.paused_until)).where(
                    col(RateLimitSlot.key).in_(keys), col(RateLimitSlot.paused_until) > now
                )
            ).all()
        return {row[0]: float(row[1]) - now for row in rows}

    def pause(self, key: str, seconds: float) -> None:
        """No slot of ``key`` before ``seconds`` from now, in every process."""
        with self.engine.begin() as conn:
            self._ensure_rows(conn, [key])
            until = self._now(conn) + seconds
            conn.execute(
                update(RateLimitSlot)
                .where(col(RateLimitSlot.key) == key, col(RateLimitSlot.paused_until) < until)
                .values(paused_until=until)
            )

    def _ensure_rows(self, conn: Connection, keys: Sequence[str]) -> None:
        missing = [key for key in keys if key not in self._known]
        if not missing:
            return
        self._insert_rows(conn, missing)
        if len(self._known) > _KNOWN_KEYS_MAX:
            self._known.clear()  # bounded memory; a forgotten key costs one no-op insert
        self._known.update(missing)

    def _insert_rows(self, conn: Connection, missing: Sequence[str]) -> None:
        """Insert the rows of ``missing`` keys; an existing one is left as it is (an insert
        racing another transaction's waits for it)."""
        rows = [
            {"key": key, "next_at": 0.0, "paused_until": 0.0, "waited_s": 0.0} for key in missing
        ]
        dialect = postgresql if self._postgres else sqlite
        statement = dialect.insert(RateLimitSlot).on_conflict_do_nothing(index_elements=["key"])
        conn.execute(statement, rows)

    def _now(self, conn: Connection) -> float:
        if self._postgres:
            epoch = func.extract("epoch", func.clock_timestamp())
            return float(conn.execute(select(epoch)).scalar_one())
        return time.time()  # SQLite lives on one host: its clock is everyone's


#: PostgreSQL's reservation in one statement (the lock, the clock, the moves; it was four
#: round trips): the rows are
#: locked in key order, the clock is read by the aggregate after every row is locked (time
#: spent waiting for a lock must not shorten the spacing), and each row moves one of its own
#: intervals past the common slot. Returns the seconds until the slot, a row per key moved;
#: or, when a pause has more than ``hold_s`` to run, no move and one row with the rest of it.
_RESERVE_POSTGRES = text(
    """
    WITH locked AS (
        SELECT next_at, paused_until FROM rate_limit_slots
        WHERE key = ANY(CAST(:keys AS text[])) ORDER BY key FOR UPDATE
    ), clock AS (
        SELECT MAX(next_at) AS next_at, MAX(paused_until) AS paused_until,
               EXTRACT(EPOCH FROM clock_timestamp())::float8 AS now_s
        FROM locked
    ), slot AS (
        SELECT now_s, paused_until - now_s AS paused_s,
               GREATEST(now_s, next_at, paused_until) AS at_s
        FROM clock
    ), moved AS (
        UPDATE rate_limit_slots AS r
        SET next_at = slot.at_s + step.interval_s,
            waited_s = r.waited_s + (slot.at_s - slot.now_s)
        FROM slot, unnest(CAST(:keys AS text[]), CAST(:intervals AS float8[]))
            AS step(key, interval_s)
        WHERE r.key = step.key AND slot.paused_s <= CAST(:hold_s AS float8)
        RETURNING slot.at_s - slot.now_s AS wait_s
    )
    SELECT wait_s, 0.0::float8 AS refused_s FROM moved
    UNION ALL
    SELECT 0.0::float8, paused_s FROM slot WHERE paused_s > CAST(:hold_s AS float8)
    """
)


#: A page's reservation, read: its rows locked in key order, and the clock after the locks.
_LOCK_POSTGRES = text(
    """
    WITH locked AS (
        SELECT key, next_at, paused_until FROM rate_limit_slots
        WHERE key = ANY(CAST(:keys AS text[])) ORDER BY key FOR UPDATE
    )
    SELECT key, next_at, paused_until, EXTRACT(EPOCH FROM clock_timestamp())::float8 AS now_s
    FROM locked
    """
)
#: ... and written: each row's next free time (a pause is kept: ``paused_until`` is untouched).
_MOVE_POSTGRES = text(
    """
    UPDATE rate_limit_slots AS r SET next_at = m.next_at, waited_s = r.waited_s + m.waited
    FROM unnest(CAST(:keys AS text[]), CAST(:next_at AS float8[]), CAST(:waited AS float8[]))
        AS m(key, next_at, waited)
    WHERE r.key = m.key
    """
)


def _longest_interval_s(limits: Sequence[Limit]) -> float:
    """How long a request under ``limits`` may wait for a pause to end rather than be
    refused: the longest of their intervals (its slot is about that far away anyway)."""
    return max(limit.interval_s for limit in limits)


def _refuse_paused(paused_s: float) -> NoReturn:
    """Raise :class:`RateLimitedLater` for a credential paused ``paused_s`` more seconds."""
    raise RateLimitedLater(
        f"rate limit: credential paused for {paused_s:.1f} s", retry_after_s=paused_s
    )


def _reserve_sqlite(
    conn: Connection, limits: Sequence[Limit], keys: list[str], hold_s: float
) -> tuple[int, float]:
    # Take the write lock first, so no other process reads between our read and our update
    # (SQLite has no SELECT ... FOR UPDATE); SQLite lives on one host: its clock is everyone's.
    conn.execute(
        update(RateLimitSlot)
        .where(col(RateLimitSlot.key).in_(keys))
        .values(next_at=RateLimitSlot.next_at)
    )
    rows = conn.execute(
        select(col(RateLimitSlot.next_at), col(RateLimitSlot.paused_until)).where(
            col(RateLimitSlot.key).in_(keys)
        )
    ).all()
    if len(rows) < len(keys):
        return len(rows), 0.0
    now = time.time()
    paused_s = max(r.paused_until for r in rows) - now
    if paused_s > hold_s:
        _refuse_paused(paused_s)
    slot: float = max([now, *(r.next_at for r in rows), *(r.paused_until for r in rows)])
    for limit in limits:
        conn.execute(
            update(RateLimitSlot)
            .where(col(RateLimitSlot.key) == limit.key)
            .values(next_at=slot + limit.interval_s, waited_s=RateLimitSlot.waited_s + (slot - now))
        )
    return len(rows), max(slot - now, 0.0)


def _reserve_postgres(
    conn: Connection, limits: Sequence[Limit], keys: list[str], hold_s: float
) -> tuple[int, float]:
    params = {"keys": [limit.key for limit in limits], "hold_s": hold_s,
              "intervals": [limit.interval_s for limit in limits]}  # fmt: skip
    rows = conn.execute(_RESERVE_POSTGRES, params).all()
    refused = [float(row.refused_s) for row in rows if row.refused_s > 0]
    if refused:
        _refuse_paused(refused[0])
    return len(rows), float(max([0.0, *(row.wait_s for row in rows)]))


def prune_idle_rows(engine: Engine, *, idle_s: float, batch_size: int = 1_000) -> int:
    """Delete the rows of credentials (and caps) unused for ``idle_s`` seconds; return how many.

    Why: a row is created for every credential ever used and nothing else removes it, so a
    deployment whose users come and go grows the table for ever. A row is idle when both its
    next slot and its pause ended ``idle_s`` ago: every reservation moves ``next_at`` past the
    present, so an idle row has neither a reservation nor a pause that could still matter. A
    credential used again gets a fresh row (see :meth:`SlotStore.reserve`); its ``waited_s``
    total starts from zero. Deleted ``batch_size`` rows per short transaction, with the
    cut-off on the database's clock (PostgreSQL), so no long lock is held on the table.
    """
    if idle_s <= 0:
        raise ValueError("idle_s must be positive")
    deleted = 0
    while True:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                now = float(
                    conn.execute(select(func.extract("epoch", func.clock_timestamp()))).scalar_one()
                )
            else:
                now = time.time()
            cutoff = now - idle_s
            idle = (col(RateLimitSlot.next_at) < cutoff) & (
                col(RateLimitSlot.paused_until) < cutoff
            )
            batch = select(col(RateLimitSlot.key)).where(idle).limit(batch_size)
            if engine.dialect.name == "postgresql":
                batch = batch.with_for_update(skip_locked=True)
            outcome = conn.execute(
                delete(RateLimitSlot).where(
                    idle, col(RateLimitSlot.key).in_(batch.scalar_subquery())
                )
            )
            count = int(getattr(outcome, "rowcount", 0) or 0)
        deleted += count
        if count < batch_size:
            break
    log.info("rate_limit_rows_pruned", deleted=deleted, idle_s=idle_s)
    return deleted


@dataclass
class _Fallback:
    """The local limiters used while the store is unreachable, and when to try it again."""

    share: float
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    limiters: dict[str, RateLimiter] = field(default_factory=dict)
    retry_store_at: float = 0.0
    logged: bool = False

    def limiter(self, limit: Limit) -> RateLimiter:
        if limit.key not in self.limiters:
            rate = limit.rate_per_s * self.share
            self.limiters[limit.key] = RateLimiter(rate, clock=self.clock, sleep=self.sleep)
        return self.limiters[limit.key]


class SharedLimiter:
    """The process's entry to the shared limits: the store, or the local fallback.

    Thread-safe; one per worker process (:func:`bgworkers.sync.limits.shared_limiter`).
    ``sleep`` and ``clock`` (monotonic seconds) are injected by tests.
    """

    def __init__(
        self,
        store: SlotStore,
        *,
        fallback_share: float,
        max_wait_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``max_wait_s``: the longest wait slept for a slot (``BGW_SYNC_HTTP_MAX_INLINE_WAIT_S``);
        a longer one raises :class:`RateLimitedLater`. None sleeps whatever it takes."""
        self.store = store
        self.max_wait_s = max_wait_s
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._fallback = _Fallback(share=fallback_share, sleep=sleep, clock=clock)

    def acquire(self, limits: Sequence[Limit]) -> float:
        """Wait until a request may go under every one of ``limits``; return seconds waited."""
        if self._store_usable():
            try:
                return self._acquire_shared(limits)
            except SQLAlchemyError as exc:
                self._store_failed(exc)
        return self._acquire_local(limits)

    def _acquire_shared(self, limits: Sequence[Limit]) -> float:
        """Reserve, sleep to the slot; reserve again if a 429 paused a key meanwhile (a slot
        reserved before the pause must not be used in it).

        A credential paused for longer than one interval raises :class:`RateLimitedLater`
        rather than sleeping, and reserves nothing: every request of that credential would
        park a worker thread until the pause ends (seconds, from the provider's
        ``Retry-After``) while other credentials' work waits in the queue, and a slot reserved
        after the pause would move the provider's global cap there too. The spacing wait of a
        busy credential (up to ``max_wait_s``) is slept as before."""
        waited = 0.0
        keys = [limit.key for limit in limits]
        longest_interval_s = _longest_interval_s(limits)
        while True:
            try:
                wait = self.store.reserve(limits, refuse_paused_over_s=longest_interval_s)
            except RateLimitedLater:
                self._store_worked()
                raise
            self._store_worked()
            if wait <= 0:
                return waited
            if self.max_wait_s is not None and wait > self.max_wait_s:
                raise RateLimitedLater(f"rate limit: next slot in {wait:.1f} s", retry_after_s=wait)
            self._sleep(wait)
            waited += wait
            if self.store.paused_for(keys) <= 0:
                return waited

    def _acquire_local(self, limits: Sequence[Limit]) -> float:
        """:meth:`_acquire_shared` on the local limiters, while the store is unreachable: a
        pause of this process's (a 429 it was answered) raises :class:`RateLimitedLater` as
        the shared one does, reserving nothing, and so does a wait over ``max_wait_s``; the
        conservative local spacing up to it is slept."""
        slot = self._reserve_local(limits)
        if slot.paused:
            _refuse_paused(slot.wait_s)
        wait = slot.wait_s
        if wait <= 0:
            return 0.0
        if self.max_wait_s is not None and wait > self.max_wait_s:
            raise RateLimitedLater(f"rate limit: next slot in {wait:.1f} s", retry_after_s=wait)
        self._sleep(wait)
        return wait

    def reserve_many(self, requests: Sequence[Sequence[Limit]]) -> list[PageSlot]:
        """Reserve a slot for each of ``requests`` without sleeping; return each one's
        :class:`PageSlot` (the caller waits, or hands a request whose wait is too long to a
        later message: its slot stays reserved, so nothing bursts; a paused one reserved
        nothing and goes on after its pause)."""
        if self._store_usable():
            try:
                slots = self.store.reserve_many(requests)
            except SQLAlchemyError as exc:
                self._store_failed(exc)
            else:
                self._store_worked()
                return slots
        return [self._reserve_local(limits) for limits in requests]

    def _reserve_local(self, limits: Sequence[Limit]) -> PageSlot:
        """A page request's slot on the local limiters, refused as the store refuses it."""
        local = [self._fallback_limiter(limit) for limit in limits]
        paused_s = max(limiter.paused_for() for limiter in local)
        if paused_s > max(limiter.interval_s for limiter in local):
            return PageSlot(paused_s, paused=True)
        return PageSlot(max(limiter.reserve() for limiter in local))

    def paused_keys(self, keys: Sequence[str]) -> dict[str, float]:
        """Which of ``keys`` are paused now, and for how many seconds; while the store is
        down, the pauses this process's local limiters hold."""
        if self._store_usable():
            try:
                return self.store.paused_keys(keys)
            except SQLAlchemyError as exc:
                self._store_failed(exc)
        with self._lock:
            local = {key: self._fallback.limiters.get(key) for key in keys}
        paused = {key: limiter.paused_for() for key, limiter in local.items() if limiter}
        return {key: seconds for key, seconds in paused.items() if seconds > 0}

    def pause(self, key: str, seconds: float) -> None:
        """Pause ``key`` for ``seconds`` everywhere (here only, while the store is down)."""
        if self._store_usable():
            try:
                self.store.pause(key, seconds)
            except SQLAlchemyError as exc:
                self._store_failed(exc)
            else:
                return
        with self._lock:
            limiter = self._fallback.limiters.get(key)
        if limiter is not None:
            limiter.pause(seconds)

    def for_credential(self, limits: Sequence[Limit]) -> CredentialThrottle:
        """A :class:`Throttle` for requests made with one credential (``limits[0]``)."""
        return CredentialThrottle(self, tuple(limits))

    def _fallback_limiter(self, limit: Limit) -> RateLimiter:
        with self._lock:
            return self._fallback.limiter(limit)

    def _store_usable(self) -> bool:
        with self._lock:
            return self._clock() >= self._fallback.retry_store_at

    def _store_failed(self, exc: SQLAlchemyError) -> None:
        with self._lock:
            self._fallback.retry_store_at = self._clock() + RETRY_STORE_AFTER_S
            if self._fallback.logged:
                return
            self._fallback.logged = True
        log.warning(
            "rate_limit_store_unavailable",
            error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
            fallback_share=self._fallback.share,
        )

    def _store_worked(self) -> None:
        with self._lock:
            if not self._fallback.logged:
                return
            self._fallback.logged = False
            self._fallback.limiters.clear()
        log.info("rate_limit_store_recovered")


@dataclass(frozen=True)
class CredentialThrottle:
    """The limits one credential's requests are subject to; its own limit comes first."""

    shared: SharedLimiter
    limits: tuple[Limit, ...]

    def acquire(self) -> float:
        return self.shared.acquire(self.limits)

    def pause(self, seconds: float) -> None:
        self.shared.pause(self.limits[0].key, seconds)


__all__ = [
    "CredentialThrottle",
    "Limit",
    "PageSlot",
    "RateLimitedLater",
    "SharedLimiter",
    "SlotStore",
    "Throttle",
    "credential_key",
    "prune_idle_rows",
]
