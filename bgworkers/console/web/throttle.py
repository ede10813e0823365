"""Failed console logins slow down, then stop, per client address and per user name.

Why both keys: one client guessing many names is stopped by its address; many clients (a
botnet) guessing one name are stopped by the name. Each failure is counted under both; the
larger count decides:

* the first :attr:`ThrottlePolicy.free_failures` failures answer at once (typos);
* each further failure answers only after a delay that doubles, from
  :attr:`~ThrottlePolicy.first_delay_s` up to :attr:`~ThrottlePolicy.max_delay_s` seconds
  (asyncio sleeps: other requests are served meanwhile);
* from :attr:`~ThrottlePolicy.lock_after` failures on, a login attempt is not even checked:
  429 with ``Retry-After`` until :attr:`~ThrottlePolicy.lock_s` seconds after the last
  failure (doubling with each further failure, up to :attr:`~ThrottlePolicy.max_lock_s`).

Counts are forgotten :attr:`~ThrottlePolicy.window_s` seconds after a key's last failure, and
a successful login clears its address and name. State lives in the console's process (one
process serves the console); at most :attr:`~ThrottlePolicy.max_keys` keys are kept (the
oldest are dropped), and a user name counts by its first 100 characters, so the table stays
small whatever is posted.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from bgworkers.console.operations import Console
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
class _Failures:
    count: int
    last: float


@dataclass
class LoginThrottle:
    """The failure counts of one console process; ``clock`` is monotonic seconds."""

    policy: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    clock: Callable[[], float] = time.monotonic
    _keys: OrderedDict[tuple[str, str], _Failures] = field(default_factory=OrderedDict)

    def retry_after_s(self, *, client: str, user: str) -> float:
        """Seconds until this client or name may try again; 0 when it may now."""
        now = self.clock()
        worst = 0.0
        for failures in self._current(client, user, now):
            if failures.count >= self.policy.lock_after:
                worst = max(worst, failures.last + self._lock_s(failures.count) - now)
        return max(worst, 0.0)

    def failed(self, *, client: str, user: str) -> float:
        """Count a failure; return the seconds to wait before answering it."""
        now = self.clock()
        count = 0
        for key in _keys(client, user):
            failures = self._fresh(key, now)
            failures = _Failures(failures.count + 1 if failures else 1, now)
            self._keys[key] = failures
            self._keys.move_to_end(key)
            count = max(count, failures.count)
        while len(self._keys) > self.policy.max_keys:
            self._keys.popitem(last=False)
        return self._delay_s(count)

    def succeeded(self, *, client: str, user: str) -> None:
        for key in _keys(client, user):
            self._keys.pop(key, None)

    def _current(self, client: str, user: str, now: float) -> list[_Failures]:
        found = (self._fresh(key, now) for key in _keys(client, user))
        return [failures for failures in found if failures is not None]

    def _fresh(self, key: tuple[str, str], now: float) -> _Failures | None:
        failures = self._keys.get(key)
        if failures is not None and now - failures.last > self.policy.window_s:
            del self._keys[key]
            return None
        return failures

    def _delay_s(self, count: int) -> float:
        beyond = count - self.policy.free_failures
        if beyond <= 0:
            return 0.0
        return float(min(self.policy.first_delay_s * 2 ** (beyond - 1), self.policy.max_delay_s))

    def _lock_s(self, count: int) -> float:
        doublings = min(count - self.policy.lock_after, 16)
        return float(min(self.policy.lock_s * 2**doublings, self.policy.max_lock_s))


def _keys(client: str, user: str) -> list[tuple[str, str]]:
    keys = [("client", client)]
    if user:
        keys.append(("user", user[:MAX_NAME_CHARS]))
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
