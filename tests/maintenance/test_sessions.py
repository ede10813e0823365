"""cleanup_old_sessions on SQLite and PostgreSQL: expired rows only, in bounded transactions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from bgworkers.maintenance.sessions import delete_expired_sessions
from bgworkers.users.models import User, UserSession

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)


def add_sessions(engine: Engine, *, expired: int, live: int) -> None:
    with Session(engine) as session:
        user = User(email="s@example.com")
        session.add(user)
        session.flush()
        assert user.id is not None
        for n in range(expired):
            session.add(
                UserSession(id=f"old-{n}", user_id=user.id, expires_at=NOW - timedelta(minutes=n))
            )
        for n in range(live):
            session.add(
                UserSession(
                    id=f"live-{n}", user_id=user.id, expires_at=NOW + timedelta(minutes=n + 1)
                )
            )
        session.commit()


def remaining(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(session.scalars(select(col(UserSession.id))))


def test_deletes_expired_sessions_in_bounded_batches(db_engine: Engine, registry) -> None:
    add_sessions(db_engine, expired=10, live=3)
    commits: list[int] = []
    event.listen(db_engine, "commit", lambda conn: commits.append(1))

    report = delete_expired_sessions(now=NOW, batch_size=4, engine=db_engine)

    assert report.deleted == 10
    assert report.batches == 3  # 4 + 4 + 2, each in its own transaction
    assert len(commits) == 3
    assert remaining(db_engine) == ["live-0", "live-1", "live-2"]
    assert registry.get_sample_value("bgworkers_maintenance_sessions_deleted_total") == 10
    assert registry.get_sample_value("bgworkers_maintenance_session_cleanup_batches_total") == 3


def test_exact_multiple_of_the_batch_and_second_run_finds_nothing(db_engine: Engine) -> None:
    add_sessions(db_engine, expired=8, live=1)
    assert delete_expired_sessions(now=NOW, batch_size=4, engine=db_engine).deleted == 8
    again = delete_expired_sessions(now=NOW, batch_size=4, engine=db_engine)
    assert (again.deleted, again.batches) == (0, 0)
    assert remaining(db_engine) == ["live-0"]


def test_uses_the_process_engine_by_default(sqlite_engine: Engine) -> None:
    add_sessions(sqlite_engine, expired=2, live=0)
    assert delete_expired_sessions(now=NOW).deleted == 2
    with Session(sqlite_engine) as session:
        assert session.scalar(select(func.count()).select_from(UserSession)) == 0


def test_periodic_actor_deletes_with_the_process_engine(db_engine: Engine, registry) -> None:
    from bgworkers import queues
    from bgworkers.maintenance.actors import cleanup_old_sessions

    with Session(db_engine) as session:
        user = User(email="actor@example.com")
        session.add(user)
        session.flush()
        assert user.id is not None
        session.add(UserSession(id="gone", user_id=user.id, expires_at=datetime.now(UTC)))
        session.add(
            UserSession(
                id="kept", user_id=user.id, expires_at=datetime.now(UTC) + timedelta(days=1)
            )
        )
        session.commit()

    cleanup_old_sessions()  # what a worker runs for the daily message

    assert remaining(db_engine) == ["kept"]
    assert cleanup_old_sessions.queue_name == queues.MAINTENANCE
    assert "periodic" in cleanup_old_sessions.options
    assert cleanup_old_sessions.options["time_limit"] < 30 * 60_000


def test_a_session_extended_while_the_batch_runs_is_kept(db_engine: Engine) -> None:
    add_sessions(db_engine, expired=3, live=0)
    extended: list[str] = []

    def extend_before_delete(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        # The application renews "old-1" just before the batch's DELETE reaches the database.
        if statement.lstrip().upper().startswith("DELETE") and not extended:
            extended.append("old-1")
            with db_engine.connect() as other:
                if db_engine.dialect.name == "postgresql":
                    other.exec_driver_sql("SET lock_timeout = '5s'")
                other.execute(
                    UserSession.__table__.update()  # type: ignore[attr-defined]
                    .where(UserSession.__table__.c.id == "old-1")  # type: ignore[attr-defined]
                    .values(expires_at=NOW + timedelta(days=30))
                )
                other.commit()

    event.listen(db_engine, "before_cursor_execute", extend_before_delete)
    try:
        report = delete_expired_sessions(now=NOW, batch_size=10, engine=db_engine)
    finally:
        event.remove(db_engine, "before_cursor_execute", extend_before_delete)

    assert extended == ["old-1"]
    assert report.deleted == 2
    assert remaining(db_engine) == ["old-1"]


def test_batch_sizes_beyond_the_driver_parameter_limit(sqlite_engine: Engine) -> None:
    add_sessions(sqlite_engine, expired=5, live=1)
    report = delete_expired_sessions(now=NOW, batch_size=100_000, engine=sqlite_engine)
    assert (report.deleted, report.batches) == (5, 1)
    assert remaining(sqlite_engine) == ["live-0"]
