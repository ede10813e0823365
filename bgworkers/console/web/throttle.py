"""Failed console logins slow down, then stop, per client address and per user name.

The rules (delays, lock, window) are in docs/console.md ("Log in"), the figures in
:class:`ThrottlePolicy`. Why both keys: one client guessing many names is stopped by its
address; many clients (a botnet) guessing one name are stopped by the name; each failure is
counted under both and the larger count decides. The counts live in the database, so every
console process, on any host, counts the same failures: an attacker gains nothing by
spreading guesses over the processes behind a load balancer. Times are Unix seconds for the
same reason (a monotonic clock is per host). At most :attr:`~ThrottlePolicy.max_keys` keys
are kept (the oldest are dropped), and a user name counts by its first 100 characters, so
the table stays small whatever is posted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from sqlalchemy import delete
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from bgworkers.console.models import LoginFailures
from bgworkers.console.operations import Console
from bgworkers.db.engine import insert_with_on_conflict
from bgworkers.logs.loggers import get_logger

log = get_logger(__name__)

#: Characters of a posted user name used as its key.
MAX_NAME_CHARS = 100


@dataclass(frozen=True)
class ThrottlePolicy:
    """Thresholds (failures) and durations (seconds)."""

    free_failures: int = 3
    first_delay_s: float = 0.5
    max_delay_s: float = 4.0
    lock_after: int = 8
    lock_s: float = 60.0
    max_lock_s: float = 900.0
    window_s: float = 900.0
    max_keys: int = 10_000


@dataclass
class LoginThrottle:
    """The failure counts, read and written in the caller's ``session``; ``clock`` gives
    Unix seconds."""

    policy: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    clock: Callable[[], float] = time.time

    def retry_after_s(self, session: Session, *, client: str, user: str) -> float:
        """Seconds until this client or name may try again; 0 when it may now."""
        now = self.clock()
        current = select(LoginFailures.failures, LoginFailures.last_failed_at).where(
            col(LoginFailures.key).in_(_keys(client, user)),
            col(LoginFailures.last_failed_at) >= now - self.policy.window_s,
        )
        locks = [
            last + self._lock_s(count) - now
            for count, last in session.execute(current)
            if count >= self.policy.lock_after
        ]
        return float(max([*locks, 0.0]))  # 0 once every lock has passed

    def failed(self, session: Session, *, client: str, user: str) -> float:
        """Count a failure; return the seconds to wait before answering it."""
        now = self.clock()
        forgotten = col(LoginFailures.last_failed_at) < now - self.policy.window_s
        session.execute(delete(LoginFailures).where(forgotten))
        count = max(_count_failure(session, key, now) for key in _keys(client, user))
        oldest = (
            select(LoginFailures.key)
            .order_by(col(LoginFailures.last_failed_at).desc())
            .offset(self.policy.max_keys)
            .scalar_subquery()
        )
        session.execute(delete(LoginFailures).where(col(LoginFailures.key).in_(oldest)))
        return self._delay_s(count)

    def succeeded(self, session: Session, *, client: str, user: str) -> None:
        keys = _keys(client, user)
        session.execute(delete(LoginFailures).where(col(LoginFailures.key).in_(keys)))

    def _delay_s(self, count: int) -> float:
        beyond = count - self.policy.free_failures
        if beyond <= 0:
            return 0.0
        return float(min(self.policy.first_delay_s * 2 ** (beyond - 1), self.policy.max_delay_s))

    def _lock_s(self, count: int) -> float:
        doublings = min(count - self.policy.lock_after, 16)
        return float(min(self.policy.lock_s * 2**doublings, self.policy.max_lock_s))


def _count_failure(session: Session, key: str, now: float) -> int:
    """One more failure for ``key``, in one statement (two processes may count at once)."""
    table = LoginFailures.__table__  # type: ignore[attr-defined]
    insert = insert_with_on_conflict(session.get_bind().dialect.name)
    statement = (
        insert(table)
        .values(key=key, failures=1, last_failed_at=now)
        .on_conflict_do_update(
            index_elements=["key"],
            set_={"failures": table.c.failures + 1, "last_failed_at": now},
        )
        .returning(table.c.failures)
    )
    return int(session.execute(statement).scalar_one())


def _keys(client: str, user: str) -> list[str]:
    keys = [f"client:{client[:MAX_NAME_CHARS]}"]
    if user:
        keys.append(f"user:{user[:MAX_NAME_CHARS]}")
    return keys


async def refuse_login(console: Console, client: str, wait_s: float) -> NoReturn:
    """Audit a refused attempt and answer 429 with ``Retry-After`` (whole seconds)."""
    seconds = max(math.ceil(wait_s), 1)
    await run_in_threadpool(console.record_login, ok=False, client=client, throttled=True)
    log.warning("console_login_throttled", client=client, retry_after_s=seconds)
    raise HTTPException(
        429,
        f"too many failed logins: try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )
