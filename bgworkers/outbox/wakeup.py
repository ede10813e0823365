"""Wake the relay when a transaction that wrote outbox rows commits, in any process.

On PostgreSQL such a transaction sends a ``NOTIFY`` on :data:`CHANNEL` (delivered only if it
commits), and the relay's process listens for it; polling stays as the fallback, so a lost
notification only costs the poll interval. Why, with figures: docs/outbox.md, "The relay".
"""

from __future__ import annotations

import threading

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.intervals import LogInterval
from bgworkers.logs.loggers import get_logger

log = get_logger(__name__)

#: The PostgreSQL notification channel of committed outbox rows.
CHANNEL = "bgworkers_outbox"
#: Seconds between two checks of ``stop`` while no notification comes.
LISTEN_TIMEOUT_S = 1.0
#: Seconds before a listener that lost its connection tries again.
RECONNECT_DELAY_S = 5.0
_FAILURE_NOTICE = LogInterval(60.0)

#: ``SELECT pg_notify(...)``, built once: run in the writing transaction, delivered at commit
#: (several in one transaction are delivered as one).
NOTIFY = select(func.pg_notify(CHANNEL, ""))


def listen(engine: Engine, wakeup: threading.Event, stop: threading.Event) -> None:
    """Set ``wakeup`` for every notification on :data:`CHANNEL` until ``stop`` is set.

    Runs on a thread of its own with a connection of its own (autocommit, outside the pool:
    it is held for the process's life), with the arguments the engine's dialect makes of its URL
    (not a libpq URL: several hosts are ``?host=a:5432&host=b:5432``). An error is logged once
    a minute and it connects again after :data:`RECONNECT_DELAY_S`; the relay polls meanwhile.
    """
    import psycopg

    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    arguments = {**cparams, "autocommit": True, "connect_timeout": 5}
    while not stop.is_set():
        try:
            with psycopg.connect(*cargs, **arguments) as connection:
                connection.execute(f"LISTEN {CHANNEL}")
                wakeup.set()  # rows committed while no one listened are due now
                while not stop.is_set():
                    for _ in connection.notifies(timeout=LISTEN_TIMEOUT_S, stop_after=1):
                        wakeup.set()
        except psycopg.Error as exc:
            if _FAILURE_NOTICE.due():
                log.warning(
                    "outbox_listener_failed",
                    error=failure_reason(exc).splitlines()[0][:500],
                    retry_in_s=RECONNECT_DELAY_S,
                    similar_held_back=_FAILURE_NOTICE.held_back,
                )
            stop.wait(RECONNECT_DELAY_S)
