"""optimize_database on the real SQLite and PostgreSQL: sizes, durations, when VACUUM runs."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from bgworkers.maintenance.optimize import DATABASE_SIZE, optimize_engine
from bgworkers.metrics.models import RecordedGauge
from bgworkers.metrics.recorded_gauges import RecordedGaugeCollector, read_recorded_gauges
from bgworkers.users.models import UserSession

MOMENT = datetime(2026, 1, 1, tzinfo=UTC)


def read_rows(engine: Engine) -> list[RecordedGauge]:
    with Session(engine) as session:
        return read_recorded_gauges(session)


def fill_and_delete_sessions(engine: Engine, count: int) -> None:
    """Leave dead space behind: many wide rows inserted, then deleted."""
    table = UserSession.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (email, display_name, timezone, daily_summary_enabled,"
                " created_at) VALUES ('bulk@example.com', '', 'UTC', true, CURRENT_TIMESTAMP)"
            )
        )
        user_id = conn.execute(text("SELECT id FROM users")).scalar()
        conn.execute(
            table.insert(),
            [
                {
                    "id": f"{n:08d}-" + "x" * 110,
                    "user_id": user_id,
                    "created_at": MOMENT,
                    "expires_at": MOMENT,
                }
                for n in range(count)
            ],
        )
        conn.execute(table.delete())


def test_optimize_reports_sizes_duration_and_metrics(db_engine: Engine, registry) -> None:
    ticks = itertools.count(start=100.0, step=2.5)
    fill_and_delete_sessions(db_engine, 5_000)

    report = optimize_engine(engine=db_engine, clock=lambda: next(ticks), force_vacuum=False)

    backend = db_engine.dialect.name
    assert report.backend == backend
    assert report.duration_s == 2.5
    assert report.size_before_bytes > 0
    assert report.size_after_bytes > 0
    assert report.vacuumed is True
    assert (
        registry.get_sample_value(
            "bgworkers_maintenance_optimize_runs_total", {"backend": backend, "vacuumed": "true"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "bgworkers_maintenance_optimize_duration_seconds_sum", {"backend": backend}
        )
        == 2.5
    )
    # The sizes are kept in the database, so the metrics process exports them after restarts.
    collector = RecordedGaugeCollector(lambda: read_rows(db_engine), interval_s=60, start=False)
    collector.refresh()
    exported = CollectorRegistry()
    exported.register(collector)
    for phase, size in (("before", report.size_before_bytes), ("after", report.size_after_bytes)):
        labels = {"backend": backend, "phase": phase}
        assert exported.get_sample_value(DATABASE_SIZE, labels) == size
    if backend == "sqlite":
        # The deleted rows' pages were free; VACUUM gave them back.
        assert report.size_after_bytes < report.size_before_bytes
    else:
        existing = set(SQLModel.metadata.tables)
        assert set(report.tables) <= existing
        assert {"users", "user_sessions", "scheduler_heartbeat"} <= set(report.tables)
        with db_engine.connect() as conn:
            # VACUUM (ANALYZE) stamped the statistics of the vacuumed table.
            stamped = conn.execute(
                text(
                    "SELECT last_vacuum IS NOT NULL AND last_analyze IS NOT NULL"
                    " FROM pg_stat_user_tables WHERE relid = to_regclass('user_sessions')"
                )
            ).scalar()
        assert stamped is True


def test_sqlite_skips_vacuum_when_there_is_little_free_space(sqlite_engine: Engine) -> None:
    report = optimize_engine(engine=sqlite_engine)
    assert report.vacuumed is False
    assert report.size_after_bytes == report.size_before_bytes

    fill_and_delete_sessions(sqlite_engine, 5_000)
    # Plenty of free pages, but under the byte threshold the rewrite is not worth it.
    assert optimize_engine(engine=sqlite_engine, min_free_bytes=10**12).vacuumed is False
    assert optimize_engine(engine=sqlite_engine, min_free_bytes=0).vacuumed is True


def test_postgresql_skips_tables_not_created_yet(postgres_engine: Engine) -> None:
    report = optimize_engine(
        engine=postgres_engine, table_names=["users", "table_of_a_future_migration"]
    )
    assert report.tables == ("users",)


def test_postgresql_statement_timeout_is_reset_afterwards(postgres_engine: Engine) -> None:
    optimize_engine(engine=postgres_engine, statement_timeout_ms=60_000)
    with postgres_engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"


def test_periodic_actor_optimizes_the_process_database(db_engine: Engine, registry) -> None:
    from bgworkers import queues
    from bgworkers.maintenance.actors import optimize_database

    optimize_database()  # what a worker runs for the weekly message

    backend = db_engine.dialect.name
    runs = sum(
        registry.get_sample_value(
            "bgworkers_maintenance_optimize_runs_total", {"backend": backend, "vacuumed": v}
        )
        or 0
        for v in ("true", "false")
    )
    assert runs == 1
    assert optimize_database.queue_name == queues.MAINTENANCE
    assert "periodic" in optimize_database.options
    assert optimize_database.options["time_limit"] < 30 * 60_000


def test_postgresql_vacuum_budget_is_for_the_whole_run(postgres_engine: Engine) -> None:
    """Each clock reading is 0.6 s later: the 1 s budget covers one table, not three."""
    readings = iter(x * 0.6 for x in range(100))
    report = optimize_engine(
        engine=postgres_engine,
        table_names=["users", "user_sessions", "scheduler_heartbeat"],
        statement_timeout_ms=1_000,
        clock=lambda: next(readings),
    )
    assert report.tables == ("users",)
