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
