"""The data layer's own guarantees, on SQLite and the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.db.engine import after_commit, insert_if_absent, session_scope
from bgworkers.users.models import User


def test_after_commit_runs_after_each_commit_and_never_after_rollback(db_engine: Engine) -> None:
    ran: list[str] = []
    with Session(db_engine) as session:
        session.add(User(email="a@example.org"))
        after_commit(session, lambda: ran.append("first"))
        assert ran == []  # not before the commit
        session.commit()
        assert ran == ["first"]

        session.add(User(email="b@example.org"))
        after_commit(session, lambda: ran.append("second"))
        session.commit()
        assert ran == ["first", "second"]

        session.add(User(email="c@example.org"))
        after_commit(session, lambda: ran.append("rolled back"))
        session.rollback()
        session.commit()
    assert ran == ["first", "second"]


def test_after_commit_waits_for_the_outer_commit_across_savepoints(db_engine: Engine) -> None:
    """Releasing a savepoint commits nothing; rolling one back drops only what was registered
    inside it; a session closed without a commit forgets what it held."""
    ran: list[str] = []
    with Session(db_engine) as session:
        after_commit(session, lambda: ran.append("outer"))
        with session.begin_nested():
            after_commit(session, lambda: ran.append("released"))
        assert ran == []  # the outer transaction has not committed yet
        savepoint = session.begin_nested()
        after_commit(session, lambda: ran.append("rolled back savepoint"))
        savepoint.rollback()
        session.rollback()  # the outer transaction too: nothing runs
        session.commit()
        assert ran == []

        after_commit(session, lambda: ran.append("outer"))
        savepoint = session.begin_nested()
        after_commit(session, lambda: ran.append("rolled back savepoint"))
        savepoint.rollback()
        with session.begin_nested():
            after_commit(session, lambda: ran.append("released"))
        session.commit()
        assert ran == ["outer", "released"]

        after_commit(session, lambda: ran.append("closed"))
    with Session(db_engine) as session:  # a new session: nothing carried over
        session.commit()
    assert ran == ["outer", "released"]


def test_a_failing_after_commit_callback_is_logged_and_the_others_run(
    db_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def fails() -> None:
        raise RuntimeError("callback broke")

    with Session(db_engine) as session:
        session.add(User(email="kept@example.org"))
        after_commit(session, fails)
        after_commit(session, lambda: ran.append("second"))
        session.commit()  # does not raise: the transaction is committed
    assert ran == ["second"]
    assert "after_commit_callback_failed" in caplog.text and "callback broke" in caplog.text
    with Session(db_engine) as session:
        assert [u.email for u in session.exec(select(User)).all()] == ["kept@example.org"]


def test_session_scope_rolls_back_on_error(db_engine: Engine) -> None:
    with pytest.raises(RuntimeError), session_scope() as session:
        session.add(User(email="lost@example.org"))
        session.flush()
        raise RuntimeError("boom")
    with Session(db_engine) as session:
        assert session.exec(select(User)).all() == []


def test_insert_if_absent_says_whether_it_inserted(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        assert insert_if_absent(
            session,
            User,
            email="x@example.org",
            display_name="X",
            timezone="UTC",
            daily_summary_enabled=True,
            created_at=datetime.now(UTC),
            conflict_columns=("email",),
        )
        assert not insert_if_absent(
            session,
            User,
            email="x@example.org",
            display_name="Y",
            timezone="UTC",
            daily_summary_enabled=True,
            created_at=datetime.now(UTC),
            conflict_columns=("email",),
        )
        session.commit()
        users = session.exec(select(User)).all()
    assert [u.display_name for u in users] == ["X"]


def test_datetimes_come_back_aware_in_utc(db_engine: Engine) -> None:
    paris_summer = timezone(timedelta(hours=2))
    with Session(db_engine) as session:
        session.add(
            User(email="t@example.org", created_at=datetime(2026, 7, 1, 10, 0, tzinfo=paris_summer))
        )
        session.commit()
    with Session(db_engine) as session:
        user = session.exec(select(User)).one()
    assert user.created_at == datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    assert user.created_at.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as session:
        session.add(User(email="n@example.org", created_at=datetime(2026, 1, 1)))
        with pytest.raises(Exception, match="naive datetime"):
            session.commit()


def test_an_idle_pooled_connection_the_server_closed_is_replaced_by_the_ping(
    postgres_engine: Engine,
) -> None:
    from sqlalchemy import text

    from bgworkers.db.engine import make_engine

    # Every connection idle long enough to be pinged at its checkout.
    url = postgres_engine.url.render_as_string(hide_password=False)
    engine = make_engine(url, trusted_idle_s=0.0)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with postgres_engine.connect() as killer:  # the server closes the idle connection
            killer.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            killer.commit()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        engine.dispose()


def test_a_session_idle_inside_a_transaction_is_ended_by_the_server(
    postgres_engine: Engine,
) -> None:
    """A host cut off between a statement and its COMMIT must not keep its row locks."""
    from sqlalchemy import text

    from bgworkers.db.engine import make_engine
    from tests.platform_helpers import wait_for

    url = postgres_engine.url.render_as_string(hide_password=False)
    engine = make_engine(url, idle_transaction_timeout_s=0.5)
    try:
        with engine.connect() as conn:
            # The URL's own options (the test schema's search_path) are kept beside it.
            assert conn.execute(text("SHOW search_path")).scalar_one() != '"$user", public'
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()  # BEGIN, then idle

            def ended() -> bool:
                with postgres_engine.connect() as watcher:
                    return not watcher.execute(
                        text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                        {"pid": pid},
                    ).scalar_one()

            wait_for(ended, timeout_s=20, what="the server to end the idle transaction")
            conn.invalidate()
    finally:
        engine.dispose()
