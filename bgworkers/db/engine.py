"""The data layer: one engine per process, one session per unit of work, UTC datetimes.

Why one engine per process: an engine owns a connection pool, and pools must not cross a
``fork()`` (dramatiq forks its worker processes), so the engine is created on first use and
forgotten in a forked child. Nothing connects at import time.

SQLite (``bgworkers.db`` in ``BGW_DATA_DIR``) is the zero-set-up default; PostgreSQL
(``postgresql+psycopg://...``) is what production runs. The schema is owned by the
migrations in :mod:`bgworkers.migrations` (``bgworkers migrate``), never by ``create_all``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, TypeDecorator, event
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, SQLModel, create_engine

from bgworkers.logs.loggers import get_logger
from bgworkers.processes.process_resources import ProcessResource
from bgworkers.settings import Settings, get_settings

_log = get_logger(__name__)

# In a forked child the parent's pooled connections are dropped without being closed (they
# belong to the parent); the process's exit closes its own.
_ENGINE: ProcessResource[Engine] = ProcessResource(
    "database_engine", after_fork=lambda engine: engine.dispose(close=False)
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite stores no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: Connections a process's pool keeps open, and how many more it opens while that many are in
#: use at once (closed when returned): a process holds at most their sum (docs/scaling.md).
POOL_SIZE = 10
POOL_MAX_OVERFLOW = 10


def make_engine(
    url: str,
    *,
    echo: bool = False,
    trusted_idle_s: float | None = None,
    idle_transaction_timeout_s: float = 0.0,
) -> Engine:
    """An engine on ``url``; ``trusted_idle_s``: see :data:`TRUSTED_IDLE_S` (its default);
    ``idle_transaction_timeout_s`` (PostgreSQL, 0: none): see
    ``Settings.database_idle_transaction_timeout_s``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Worker threads share the pool; SQLite's own locking (with a busy timeout) serialises
        # writers, and WAL lets readers go on while one writes.
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # connect_timeout (seconds): an unreachable server fails a message or a readiness check
    # instead of hanging it.
    connect_args: dict[str, Any] = {"connect_timeout": 10}
    if idle_transaction_timeout_s > 0:
        timeout_ms = max(int(idle_transaction_timeout_s * 1000), 1)
        # Added to the URL's own libpq options (connect_args would replace them).
        own = parsed.query.get("options") or ""
        own = own if isinstance(own, str) else " ".join(own)
        timeout = f"-c idle_in_transaction_session_timeout={timeout_ms}"
        connect_args["options"] = f"{own} {timeout}".strip()
    engine = create_engine(
        url,
        echo=echo,
        pool_size=POOL_SIZE,
        max_overflow=POOL_MAX_OVERFLOW,
        connect_args=connect_args,
    )
    ping_only_when_idle(engine, trusted_idle_s=trusted_idle_s)
    return engine


def ping_only_when_idle(engine: Engine, *, trusted_idle_s: float | None = None) -> None:
    """Ping ``engine``'s pooled connections at checkout only after ``trusted_idle_s``
    idle (default :data:`TRUSTED_IDLE_S`; see there why not on every checkout)."""
    event.listen(engine, "checkin", _note_checkin)
    trusted = TRUSTED_IDLE_S if trusted_idle_s is None else trusted_idle_s
    event.listen(engine, "checkout", functools.partial(_ping_if_idle, engine.dialect, trusted))


#: Seconds a pooled connection may have been idle and still be used without a ping first.
#: A ping per checkout (``pool_pre_ping``) was a round trip per message, a seventh of a
#: short message's time; a connection used a moment ago is open. One that the server closed
#: since (a restart) fails its next statement once: the message is retried and SQLAlchemy
#: invalidates the pool's older connections.
TRUSTED_IDLE_S = 2.0


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(
    dialect: Dialect, trusted_idle_s: float, dbapi_connection: Any, record: Any, _proxy: Any
) -> None:
    """Ping a connection idle for more than ``trusted_idle_s`` (or never checked in); a dead
    one makes the pool retry with a fresh connection."""
    checked_in_at = record.info.get("checked_in_at")
    if checked_in_at is not None and time.monotonic() - checked_in_at <= trusted_idle_s:
        return
    try:
        dialect.do_ping(dbapi_connection)
    except Exception as exc:  # any failure of the ping means a dead connection
        raise DisconnectionError(str(exc)) from exc


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def get_engine(settings: Settings | None = None) -> Engine:
    """This process's engine, created on first use from the settings."""

    def build() -> Engine:
        chosen = settings or get_settings()
        engine = make_engine(
            chosen.database_url.get_secret_value(),
            echo=chosen.database_echo,
            idle_transaction_timeout_s=chosen.database_idle_transaction_timeout_s,
        )
        if chosen.trace_sql:  # SQL spans when tracing is on: see bgworkers.tracing.spans
            from bgworkers.tracing.spans import active_tracer, trace_statements

            tracer = active_tracer()
            if tracer is not None:
                trace_statements(engine, tracer)
        return engine

    return _ENGINE.get(build)


def use_engine(engine: Engine | None) -> None:
    """Replace this process's engine (tests point it at a temporary database)."""
    _ENGINE.replace(engine)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """One transaction: committed if the block succeeds, rolled back if it raises."""
    with Session(engine or get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:  # even an interrupt: nothing half-done is committed later
            session.rollback()
            raise


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's current transaction commits (never on rollback).

    Use it to send follow-up messages, so a worker never receives a message about a row
    that is not yet visible, or that a rollback made disappear. Works for every transaction
    of a session, not only its first. Savepoints: releasing one commits nothing, so nothing
    runs then; rolling one back drops only what was registered inside it. A callback that
    raises is logged and the others still run: the transaction is committed by then, so
    raising would only have the caller's work retried.
    """
    if not session.info.get("bgw_after_commit_listening"):
        event.listen(session, "after_commit", _run_after_commit)
        event.listen(session, "after_soft_rollback", _drop_rolled_back)
        event.listen(session, "after_transaction_end", _forget_at_end)
        session.info["bgw_after_commit_listening"] = True
    pending = session.info.setdefault("bgw_after_commit", [])
    pending.append((session.get_nested_transaction(), callback))


def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: the transaction goes on
        return
    for _, callback in session.info.pop("bgw_after_commit", []):
        try:
            callback()
        except Exception as exc:  # noqa: BLE001 - committed already: say so, run the rest
            _log.error("after_commit_callback_failed", callback=repr(callback), error=repr(exc))


def _drop_rolled_back(session: Session, previous: SessionTransaction) -> None:
    pending = session.info.get("bgw_after_commit")
    if pending:
        session.info["bgw_after_commit"] = [
            (registered_in, callback)
            for registered_in, callback in pending
            if not _inside(registered_in, previous)
        ]


def _inside(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    """Whether ``transaction`` (None: the session's root one) is ``outer`` or nested in it."""
    if transaction is None:
        return not outer.nested
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


def _forget_at_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the root transaction ended (closed without a commit)
        session.info.pop("bgw_after_commit", None)


def insert_with_on_conflict(dialect_name: str) -> Callable[..., Any]:
    """The ``insert`` with ``ON CONFLICT`` clauses of a dialect: PostgreSQL's, else SQLite's.

    Imported on first use: a dialect module is 0.7 (SQLite) to 2.2 MiB (PostgreSQL) in every
    process, and the engine already loads the one it runs on.
    """
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def insert_if_absent(
    session: Session,
    model: type[SQLModel],
    *,
    conflict_columns: tuple[str, ...] | None = None,
    **values: Any,
) -> bool:
    """``INSERT ... ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL); True if inserted.

    Why not a savepoint around a plain INSERT: with the standard library's SQLite driver a
    savepoint opened before any write runs outside the transaction and commits on release,
    so a later rollback would not undo it. ``conflict_columns`` defaults to the primary key.
    """
    table = model.__table__  # type: ignore[attr-defined]
    insert = insert_with_on_conflict(session.get_bind().dialect.name)
    columns = list(conflict_columns) if conflict_columns else None
    statement = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=columns)
        .returning(*table.primary_key.columns)
    )
    # A returned key means "inserted": psycopg reports rowcount -1 for this statement.
    return session.execute(statement).first() is not None
