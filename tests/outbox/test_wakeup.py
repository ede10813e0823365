"""A commit anywhere wakes the relay at once on PostgreSQL (NOTIFY), not at its next poll."""

from __future__ import annotations

import threading

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers.outbox import enqueue
from bgworkers.outbox.relay import Relay, RelayConfig
from bgworkers.outbox.wakeup import CHANNEL
from tests.outbox.helpers import Clock, MemoryPublisher, add
from tests.outbox.probe import outbox_probe
from tests.platform_helpers import wait_for


def listeners(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND query = :listen"
                ),
                {"listen": f"LISTEN {CHANNEL}"},
            ).scalar_one()
        )


def test_a_commit_elsewhere_wakes_the_relay_before_its_poll(postgres_engine: Engine) -> None:
    publisher, stop, wakeup = MemoryPublisher(), threading.Event(), threading.Event()
    # Its own wakeup event (not the one this process's commits set), polling every 2 minutes.
    one = Relay(
        engine=lambda: postgres_engine,
        publisher=publisher,
        config=RelayConfig(use_lease=False, poll_interval_s=120),
        clock=Clock(),
        wakeup=wakeup,
    )
    before = listeners(postgres_engine)
    thread = threading.Thread(target=one.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: listeners(postgres_engine) > before, timeout_s=20, what="LISTEN")
        add(postgres_engine, 3)
        wait_for(
            lambda: sum(len(batch) for batch in publisher.batches) == 3,
            timeout_s=20,
            what="the three messages published long before the next poll",
        )
    finally:
        stop.set()
        wakeup.set()  # ends the relay's wait for its next poll
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_rolled_back_transaction_wakes_no_one(postgres_engine: Engine) -> None:
    with postgres_engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(f"LISTEN {CHANNEL}"))
        raw = conn.connection.driver_connection
        assert raw is not None
        with Session(postgres_engine) as session:
            enqueue(session, outbox_probe, "undone")
            session.rollback()
            enqueue(session, outbox_probe, "kept")
            enqueue(session, outbox_probe, "kept too")
            session.commit()
        notes = list(raw.notifies(timeout=5, stop_after=2))
    assert [n.channel for n in notes] == [CHANNEL]  # one for the committed transaction


def test_a_rolled_back_savepoint_keeps_the_wakeup_of_rows_written_before_it(
    postgres_engine: Engine,
) -> None:
    from bgworkers.outbox.api import RELAY_WAKEUP

    with postgres_engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(f"LISTEN {CHANNEL}"))
        raw = conn.connection.driver_connection
        assert raw is not None
        with Session(postgres_engine) as session:
            enqueue(session, outbox_probe, "kept")
            savepoint = session.begin_nested()
            enqueue(session, outbox_probe, "undone")
            savepoint.rollback()
            RELAY_WAKEUP.clear()
            session.commit()
            assert RELAY_WAKEUP.is_set()  # "kept" is still in the transaction
        notes = list(raw.notifies(timeout=5, stop_after=1))
    assert [n.channel for n in notes] == [CHANNEL]


def test_rows_written_only_in_a_rolled_back_savepoint_wake_no_one(
    postgres_engine: Engine,
) -> None:
    from bgworkers.outbox.api import RELAY_WAKEUP

    with postgres_engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(f"LISTEN {CHANNEL}"))
        raw = conn.connection.driver_connection
        assert raw is not None
        with Session(postgres_engine) as session:
            session.execute(text("SELECT 1"))
            savepoint = session.begin_nested()
            enqueue(session, outbox_probe, "undone")
            savepoint.rollback()
            RELAY_WAKEUP.clear()
            session.commit()
            assert not RELAY_WAKEUP.is_set()
            # A row written after the rolled-back savepoint notifies again.
            enqueue(session, outbox_probe, "later")
            session.commit()
            assert RELAY_WAKEUP.is_set()
        notes = list(raw.notifies(timeout=5, stop_after=1))
    assert [n.channel for n in notes] == [CHANNEL]
