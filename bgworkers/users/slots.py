"""A cap on how many per-user jobs of one user run at once, over every process and host.

Why: one user with a huge calendar, a huge Notion workspace and a backup due would otherwise
hold three worker threads while everyone else's work waits. A job takes one of the user's
``cap`` slots, a PostgreSQL session-level advisory lock held for the job's run on a connection
of its own (outside the process's pool, so a worker's threads never run short of pooled
connections); a job that finds them all taken is queued again a little later (see
:func:`bgworkers.users.slots.user_slot`'s callers) instead of holding a thread. A lock dies
with its connection, so a worker that crashes frees its slots. SQLite (one host, a handful of
threads) has no advisory locks: there the cap is not enforced.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from bgworkers.db.engine import get_engine
from bgworkers.logs.loggers import get_logger

log = get_logger(__name__)

#: First half of our advisory lock keys (plus the slot number), so ours never meet an
#: application's that uses the one-key form or other numbers; the second half is the user id.
_NAMESPACE = 0x62677700
#: Milliseconds before a job that found its user at the cap runs again (plus up to as much
#: again at random, so deferred jobs do not return in a herd).
DEFER_MS = 5_000


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
    with _unpooled(engine).connect() as conn:
        key = _take_slot(conn, user_id, min(cap, 32))
        try:
            yield key is not None
        finally:
            if key is not None:
                conn.execute(select(func.pg_advisory_unlock(*key)))
                conn.commit()


_UNPOOLED: dict[str, Engine] = {}
_UNPOOLED_LOCK = threading.Lock()


def _unpooled(engine: Engine) -> Engine:
    """An engine on ``engine``'s database whose connections are opened per job and closed
    after it (one per running per-user job, on top of the pool)."""
    url = engine.url.render_as_string(hide_password=False)
    with _UNPOOLED_LOCK:
        if url not in _UNPOOLED:
            _UNPOOLED[url] = create_engine(
                engine.url, poolclass=NullPool, connect_args={"connect_timeout": 10}
            )
        return _UNPOOLED[url]


def _take_slot(conn: Connection, user_id: int, cap: int) -> tuple[int, int] | None:
    for slot in range(cap):
        key = lock_key(user_id, slot)
        if conn.execute(select(func.pg_try_advisory_lock(*key))).scalar_one():
            conn.commit()  # the lock is the session's; no transaction needs to stay open
            return key
    conn.commit()
    return None


def defer(actor: dramatiq.Actor[Any, Any], *args: Any) -> None:
    """Send ``actor(*args)`` again in :data:`DEFER_MS` to 2x that: the user is at the cap."""
    delay = DEFER_MS + random.randint(0, DEFER_MS)  # spreading, not security
    actor.send_with_options(args=args, delay=delay)
    log.info("user_job_deferred", actor=actor.actor_name, delay_ms=delay)
