"""A cap on how many per-user jobs of one user run at once, over every process and host.

Why: one user with a huge calendar, a huge Notion workspace and a backup due would otherwise
hold three worker threads while everyone else's work waits. A job takes one of the user's
``cap`` slots, a PostgreSQL session-level advisory lock held for the job's run on a connection
of its own (from a small pool apart from the process's, so a worker's threads never run short
of pooled connections); a job that finds them all taken is queued again a little later (see
:func:`bgworkers.users.slots.user_slot`'s callers) instead of holding a thread. A lock dies
with its connection, so a worker that crashes frees its slots. SQLite (one host, a handful of
threads) has no advisory locks: there the cap is not enforced.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dramatiq
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import Connection

from bgworkers.db.engine import get_engine, ping_only_when_idle
from bgworkers.logs.loggers import get_logger
from bgworkers.processes.process_resources import ProcessResource

log = get_logger(__name__)

#: First half of our advisory lock keys (plus the slot number), so ours never meet an
#: application's that uses the one-key form or other numbers; the second half is the user id.
_NAMESPACE = 0x62677700
#: Milliseconds before a job that found its user at the cap runs again (plus up to as much
#: again at random, so deferred jobs do not return in a herd).
DEFER_MS = 5_000


#: Plain statements: a ``select(func...)`` was compiled (cache key and all) at every job.
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:a, :b)")
_UNLOCK = text("SELECT pg_advisory_unlock(:a, :b)")


def lock_key(user_id: int, slot: int) -> tuple[int, int]:
    """The two 32-bit advisory lock keys of one slot of one user."""
    return _NAMESPACE + slot, user_id


@contextmanager
def user_slot(user_id: int, *, cap: int, engine: Engine | None = None) -> Iterator[bool]:
    """Hold one of the user's ``cap`` slots for the block: yields True, or False when all are
    taken (the block should then defer its job). ``cap`` 0 (no cap) and SQLite yield True."""
    engine = engine or get_engine()
    if cap <= 0 or engine.dialect.name != "postgresql":
        yield True
        return
    with _slot_engine(engine).connect() as conn:
        key = _take_slot(conn, user_id, min(cap, 32))
        try:
            yield key is not None
        finally:
            if key is not None:
                _release(conn, key)


@contextmanager
def user_slots(
    user_ids: Sequence[int], *, cap: int, engine: Engine | None = None
) -> Iterator[set[int]]:
    """Hold one slot of each of ``user_ids`` that has one free, for the block: yields the
    ids that got one (the others should be deferred). One statement per slot number for the
    whole page, on one connection (a page's users share its locks' lifetime), where
    :func:`user_slot` took a round trip per user. ``cap`` 0 and SQLite yield every id."""
    engine = engine or get_engine()
    if cap <= 0 or engine.dialect.name != "postgresql":
        yield set(user_ids)
        return
    with _slot_engine(engine).connect() as conn:
        held: list[tuple[int, int]] = []
        try:
            left = list(dict.fromkeys(user_ids))
            for slot in range(min(cap, 32)):
                if not left:
                    break
                got = _take_many(conn, left, slot)
                held.extend((_NAMESPACE + slot, user_id) for user_id in got)
                left = [user_id for user_id in left if user_id not in got]
            conn.commit()  # the locks are the session's; no transaction needs to stay open
        except BaseException:  # even an interrupt: closing the connection releases what it took
            conn.invalidate()
            raise
        try:
            yield {user_id for _, user_id in held}
        finally:
            _release_many(conn, held)


_TAKE_MANY = text(
    "SELECT u FROM unnest(CAST(:ids AS int[])) AS u"
    " WHERE pg_try_advisory_lock(CAST(:key AS int), u)"
)
_RELEASE_MANY = text(
    "SELECT bool_and(pg_advisory_unlock(k, u)) FROM unnest(CAST(:keys AS int[]),"
    " CAST(:ids AS int[])) AS held(k, u)"
)


def _take_many(conn: Connection, user_ids: list[int], slot: int) -> set[int]:
    rows = conn.execute(_TAKE_MANY, {"ids": user_ids, "key": _NAMESPACE + slot})
    return {int(row[0]) for row in rows}


def _release_many(conn: Connection, held: list[tuple[int, int]]) -> None:
    """Unlock every key of ``held``; as :func:`_release`, a connection that cannot say it
    did is closed."""
    if not held:
        return
    keys, ids = [k for k, _ in held], [u for _, u in held]
    try:
        released = conn.execute(_RELEASE_MANY, {"keys": keys, "ids": ids}).scalar_one()
        conn.commit()
    except BaseException:  # even an interrupt: a connection in an unknown state is not reused
        conn.invalidate()
        raise
    if not released:
        conn.invalidate()


def _release(conn: Connection, key: tuple[int, int]) -> None:
    """Unlock ``key``; a connection that cannot say it did is closed (the lock dies with it),
    so a pooled connection never carries a user's slot into the next job."""
    try:
        released = conn.execute(_UNLOCK, {"a": key[0], "b": key[1]}).scalar_one()
    except BaseException:  # even an interrupt: a connection in an unknown state is not reused
        conn.invalidate()
        raise
    if not released:
        conn.invalidate()


def _dispose(engines: dict[str, Engine], *, close: bool = True) -> None:
    for slot_engine in engines.values():
        slot_engine.dispose(close=close)


#: The slot engines of this process, by database URL; a forked child makes its own.
_SLOT_ENGINES: ProcessResource[dict[str, Engine]] = ProcessResource(
    "user_slot_engines",
    close=_dispose,
    after_fork=functools.partial(_dispose, close=False),
)
_SLOT_ENGINES_LOCK = threading.Lock()
#: Slot connections kept open between jobs: one per worker thread of a default process.
#: Opening a PostgreSQL connection per job (a server process forked, authentication) was
#: most of a short per-user job's cost; more jobs at once open extra ones, closed after.
KEPT_CONNECTIONS = 8


def _slot_engine(engine: Engine) -> Engine:
    """An engine on ``engine``'s database for the slot connections, apart from its pool.

    A connection goes back to this engine's pool only after its lock was released; one whose
    unlock failed is invalidated (closed), which releases the lock with it. Autocommit: the
    locks are the session's, so no transaction is needed, and each lock or unlock is one
    round trip instead of three (BEGIN, the call, COMMIT); a connection is pinged only after
    it sat idle (:func:`~bgworkers.db.engine.ping_only_when_idle`), not at every checkout.
    """
    url = engine.url.render_as_string(hide_password=False)
    engines = _SLOT_ENGINES.get(dict)
    with _SLOT_ENGINES_LOCK:
        if url not in engines:
            engines[url] = create_engine(
                engine.url,
                pool_size=KEPT_CONNECTIONS,
                max_overflow=-1,
                isolation_level="AUTOCOMMIT",
                connect_args={"connect_timeout": 10},
            )
            ping_only_when_idle(engines[url])
        return engines[url]


def _take_slot(conn: Connection, user_id: int, cap: int) -> tuple[int, int] | None:
    for slot in range(cap):
        key = lock_key(user_id, slot)
        if conn.execute(_TRY_LOCK, {"a": key[0], "b": key[1]}).scalar_one():
            return key
    return None


def defer(actor: dramatiq.Actor[Any, Any], *args: Any) -> None:
    """Send ``actor(*args)`` again in :data:`DEFER_MS` to 2x that: the user is at the cap."""
    delay = DEFER_MS + random.randint(0, DEFER_MS)  # spreading, not security
    actor.send_with_options(args=args, delay=delay)
    log.info("user_job_deferred", actor=actor.actor_name, delay_ms=delay)
