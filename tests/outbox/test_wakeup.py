"""A commit anywhere wakes the relay at once on PostgreSQL (NOTIFY), not at its next poll."""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import text
from sqlalchemy.engine import URL, Engine
from sqlmodel import Session

from bgworkers.db.engine import make_engine
from bgworkers.outbox import enqueue
from bgworkers.outbox.relay import Relay, RelayConfig
from bgworkers.outbox.wakeup import CHANNEL, NOTIFY, listen
from tests.outbox.helpers import Clock, MemoryPublisher, add
from tests.outbox.probe import outbox_probe
from tests.platform_helpers import free_port, wait_for


def listeners(engine: Engine, *, application_name: str = "%") -> int:
    """Sessions listening on the outbox's channel (of one application name, if given)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND query = :listen AND application_name LIKE :name"
                ),
                {"listen": f"LISTEN {CHANNEL}", "name": application_name},
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


def test_the_listener_connects_as_the_engine_does_to_a_list_of_hosts(
    postgres_engine: Engine,
) -> None:
    """Several hosts in SQLAlchemy's form (``?host=a:port&host=b:port``, which libpq cannot
    read), the first one down: the listener connects to the next one, as the engine does."""
    name = f"bgw-listener-{uuid.uuid4().hex[:8]}"
    url = postgres_engine.url
    hosts = [f"127.0.0.1:{free_port()}", f"{url.host}:{url.port or 5432}"]
    query = {**url.query, "host": hosts, "application_name": name}
    several = URL.create(
        url.drivername, url.username, url.password, database=url.database, query=query
    )
    engine = make_engine(several.render_as_string(hide_password=False))
    wakeup, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=listen, args=(engine, wakeup, stop))
    thread.start()
    try:
        wait_for(
            lambda: listeners(postgres_engine, application_name=name) == 1,
            timeout_s=20,
            what="the listener's session, named by the URL",
        )
        # The listener sets the event once LISTEN has returned (rows committed before are due);
        # only after that set can a set be the notification's.
        wait_for(wakeup.is_set, timeout_s=20, what="the listener's first wake-up")
        wakeup.clear()
        with engine.begin() as conn:
            conn.execute(NOTIFY)
        wait_for(wakeup.is_set, timeout_s=20, what="the notification")
    finally:
        stop.set()
        thread.join(timeout=10)
        engine.dispose()
    assert not thread.is_alive()
