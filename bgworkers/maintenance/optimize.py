"""Keep the database compact and its planner statistics fresh.

PostgreSQL: ``VACUUM (ANALYZE)`` of each of bgworkers' tables (those in ``SQLModel.metadata``
that exist), one statement per table on an autocommit connection, since VACUUM cannot run
inside a transaction. Plain VACUUM takes no exclusive lock, so the application keeps working;
it makes dead rows' space reusable and refreshes statistics, but rarely shrinks files (that
would need ``VACUUM FULL``, which locks tables and is not done here). Size is the sum of
``pg_total_relation_size`` (table, indexes, TOAST) over those tables, in bytes.

SQLite: ``PRAGMA optimize`` always (cheap: it analyses only what needs it), ``VACUUM`` only
when the free-page list is both a large share of the file and large in bytes, because VACUUM
rewrites the whole file and blocks writers meanwhile. Size is ``page_count * page_size``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from bgworkers.db.tables import every_table
from bgworkers.errors import PermanentError
from bgworkers.logs.loggers import get_logger
from bgworkers.maintenance.metrics import MAINTENANCE_METRICS

log = get_logger(__name__)
#: The recorded gauge of the sizes (see :mod:`bgworkers.metrics.recorded_gauges`).
DATABASE_SIZE = "bgworkers_maintenance_database_size_bytes"


class UnsupportedDatabase(PermanentError):
    """The database is neither PostgreSQL nor SQLite; there is no maintenance recipe for it."""


@dataclass(frozen=True)
class OptimizeReport:
    """One run: sizes in bytes, duration in seconds, the tables vacuumed (PostgreSQL)."""

    backend: str
    size_before_bytes: int
    size_after_bytes: int
    duration_s: float
    vacuumed: bool
    tables: tuple[str, ...] = ()


def optimize_engine(
    *,
    engine: Engine,
    table_names: Sequence[str] | None = None,
    min_free_ratio: float = 0.1,
    min_free_bytes: int = 1_048_576,
    force_vacuum: bool = False,
    statement_timeout_ms: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> OptimizeReport:
    """Vacuum/analyse the database behind ``engine`` and report sizes and duration.

    ``table_names`` defaults to every table in ``SQLModel.metadata`` (PostgreSQL only).
    SQLite vacuums when free pages are at least ``min_free_ratio`` of the file and
    ``min_free_bytes`` bytes, or always with ``force_vacuum``. ``statement_timeout_ms`` is the
    budget of all PostgreSQL VACUUMs of the run together (each gets what is left), so the run
    ends before the actor's time limit; tables it does not reach wait for the next run.
    """
    started = clock()
    backend = engine.dialect.name
    with engine.connect() as connection:
        conn = connection.execution_options(isolation_level="AUTOCOMMIT")
        if backend == "postgresql":
            names = sorted(every_table().tables) if table_names is None else list(table_names)
            before, after, tables = _postgresql(conn, names, statement_timeout_ms, clock)
            vacuumed = bool(tables)
        elif backend == "sqlite":
            before, after, vacuumed = _sqlite(conn, min_free_ratio, min_free_bytes, force_vacuum)
            tables = ()
        else:
            raise UnsupportedDatabase(f"no maintenance recipe for {backend}")
    report = OptimizeReport(backend, before, after, clock() - started, vacuumed, tables)
    _record(report, engine)
    return report


def _postgresql(
    conn: Connection,
    names: Sequence[str],
    budget_ms: int | None,
    clock: Callable[[], float],
) -> tuple[int, int, tuple[str, ...]]:
    quote = conn.dialect.identifier_preparer.quote
    existing = tuple(
        name
        for name in names
        if conn.execute(text("SELECT to_regclass(:name)"), {"name": quote(name)}).scalar()
        is not None
    )
    before = _postgresql_size(conn, existing)
    deadline = None if budget_ms is None else clock() + budget_ms / 1000
    vacuumed: list[str] = []
    try:
        for name in existing:
            if deadline is not None:
                left_ms = int((deadline - clock()) * 1000)
                if left_ms <= 0:
                    log.warning(
                        "optimize_budget_used", skipped_tables=len(existing) - len(vacuumed)
                    )
                    break
                conn.execute(text(f"SET statement_timeout = {left_ms}"))
            conn.execute(text(f"VACUUM (ANALYZE) {quote(name)}"))
            vacuumed.append(name)
    finally:
        if deadline is not None:
            conn.execute(text("RESET statement_timeout"))
    return before, _postgresql_size(conn, existing), tuple(vacuumed)


def _postgresql_size(conn: Connection, names: Sequence[str]) -> int:
    quote = conn.dialect.identifier_preparer.quote
    total = 0
    for name in names:
        size = conn.execute(
            text("SELECT pg_total_relation_size(to_regclass(:name))"), {"name": quote(name)}
        ).scalar()
        total += int(size or 0)
    return total


def _sqlite_pages(conn: Connection) -> tuple[int, int, int]:
    page_size = int(conn.exec_driver_sql("PRAGMA page_size").scalar() or 0)
    page_count = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    freelist = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
    return page_size, page_count, freelist


def _sqlite(
    conn: Connection, min_free_ratio: float, min_free_bytes: int, force_vacuum: bool
) -> tuple[int, int, bool]:
    page_size, page_count, freelist = _sqlite_pages(conn)
    conn.exec_driver_sql("PRAGMA optimize")
    worthwhile = (
        page_count > 0
        and freelist / page_count >= min_free_ratio
        and freelist * page_size >= min_free_bytes
    )
    if force_vacuum or worthwhile:
        conn.exec_driver_sql("VACUUM")
        # In WAL mode the rewritten pages sit in the -wal file until a checkpoint.
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    after_size, after_count, _ = _sqlite_pages(conn)
    return page_size * page_count, after_size * after_count, force_vacuum or worthwhile


def _record(report: OptimizeReport, engine: Engine) -> None:
    """Counters in this process; the sizes in the database (``monitoring_gauges``), so the
    worker group's metrics process exports them after any restart until next week's run."""
    from sqlmodel import Session

    from bgworkers.db.engine import utcnow
    from bgworkers.metrics.recorded_gauges import record_gauge

    metrics = MAINTENANCE_METRICS.get()
    metrics.optimize_runs.labels(
        backend=report.backend, vacuumed=str(report.vacuumed).lower()
    ).inc()
    metrics.optimize_duration.labels(backend=report.backend).observe(report.duration_s)
    now = utcnow()
    with Session(engine) as session:
        for phase, size in (
            ("before", report.size_before_bytes),
            ("after", report.size_after_bytes),
        ):
            record_gauge(
                session, DATABASE_SIZE, {"backend": report.backend, "phase": phase}, size, now=now
            )
        session.commit()
    log.info(
        "database_optimized",
        backend=report.backend,
        vacuumed=report.vacuumed,
        tables=len(report.tables),
        size_before_bytes=report.size_before_bytes,
        size_after_bytes=report.size_after_bytes,
        duration_s=round(report.duration_s, 3),
    )
