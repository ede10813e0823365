"""Wake the relay when a transaction that wrote outbox rows commits, in any process.

Why: the relay polls the table every ``BGW_OUTBOX_POLL_INTERVAL_S`` (0.5 s) unless a commit
in its own process wakes it, and most commits happen elsewhere (the application, the other
worker processes): a message waited a quarter of a second on average before it was even
read, longer than a whole page of emails takes to send. On PostgreSQL a transaction that
writes outbox rows also sends a ``NOTIFY`` on :data:`CHANNEL`, which PostgreSQL delivers only
if and when it commits; the relay's process listens on one connection of its own and wakes
the relay at once. Polling stays as the fallback (another database, a listener that lost its
connection), so a lost notification only costs the poll interval.
"""

from __future__ import annotations

import threading
from typing import Any

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


def notify_statement(dialect: str) -> Any | None:
    """The statement that wakes listening relays at commit, or None for this dialect."""
    return NOTIFY if dialect == "postgresql" else None


def listen(engine: Engine, wakeup: threading.Event, stop: threading.Event) -> None:
    """Set ``wakeup`` for every notification on :data:`CHANNEL` until ``stop`` is set.

    Runs on a thread of its own with a connection of its own (autocommit, outside the pool:
    it is held for the process's life). An error is logged once a minute and the listener
    connects again after :data:`RECONNECT_DELAY_S`; the relay polls meanwhile.
    """
    import psycopg

    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    while not stop.is_set():
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
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


def start_listener(
    engine: Engine, wakeup: threading.Event, stop: threading.Event
) -> threading.Thread | None:
    """A daemon thread running :func:`listen` on PostgreSQL; None on another database."""
    if engine.dialect.name != "postgresql":
        return None
    thread = threading.Thread(
        target=listen, args=(engine, wakeup, stop), name="outbox-listener", daemon=True
    )
    thread.start()
    return thread
