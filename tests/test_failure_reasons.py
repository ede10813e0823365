"""Lines of ours that report a database error carry its short reason: the driver's error class
and first message line, never the statement or the values bound to it."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ProgrammingError
from sqlmodel import Session

from bgworkers.logs.failure_reasons import error_text, failure_reason
from bgworkers.outbox.relay import Relay, RelayConfig
from tests.outbox.test_relay import MemoryPublisher
from tests.platform_helpers import captured_json_logs, wait_for

ADDRESS = "alice.private@example.com"


def test_a_postgresql_error_is_its_driver_class_and_first_line(postgres_engine: Engine) -> None:
    with Session(postgres_engine) as session, pytest.raises(ProgrammingError) as raised:
        session.execute(
            text("INSERT INTO no_such_table (email) VALUES (:email)"), {"email": ADDRESS}
        )
    full = str(raised.value)
    assert "[parameters:" in full and ADDRESS in full  # what SQLAlchemy's own text carries
    for reason in (failure_reason(raised.value), error_text(raised.value)):
        assert reason == 'UndefinedTable: relation "no_such_table" does not exist'


def test_outbox_relay_failed_carries_no_statement_and_no_parameters(
    postgres_engine: Engine,
) -> None:
    """The relay meets a real PostgreSQL error (its tables are gone) on every attempt."""
    with postgres_engine.begin() as connection:
        connection.execute(text("DROP TABLE outbox_relay_lease, outbox_messages"))
    errors: list[BaseException] = []
    event.listen(postgres_engine, "handle_error", lambda ctx: errors.append(ctx.original_exception))
    config = RelayConfig(holder=f"holder-{ADDRESS}")
    relay = Relay(engine=lambda: postgres_engine, publisher=MemoryPublisher(), config=config)
    stop = threading.Event()
    with captured_json_logs() as logs:
        thread = threading.Thread(target=relay.run, args=(stop,))
        thread.start()
        try:
            wait_for(lambda: len(errors) >= 1, what="the relay's first database error")
        finally:
            stop.set()
            thread.join(timeout=30)
    assert not thread.is_alive()
    lines = [line for line in logs if line["event"] == "outbox_relay_failed"]
    assert len(lines) == 1
    for line in lines:
        assert line["error"].startswith('UndefinedTable: relation "outbox_relay_lease"'), line
        rendered = str(line)
        assert "[parameters:" not in rendered and "[SQL:" not in rendered
        assert ADDRESS not in rendered
        assert not any(word in rendered for word in ("INSERT", "UPDATE", "SELECT", "DELETE"))
