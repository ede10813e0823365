"""Lines of ours that report a database error carry its short reason: the driver's error class
and first message line, never the statement or the values bound to it."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime

import dramatiq
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ProgrammingError
from sqlmodel import Session, select

from bgworkers import queues
from bgworkers.console.models import Attempt, DeadLetter
from bgworkers.db.engine import session_scope, utcnow
from bgworkers.errors import PermanentError
from bgworkers.logs.failure_reasons import error_text, failure_reason
from bgworkers.monitoring.health import CheckResult, DeadlineCheck
from bgworkers.monitoring.report import print_health
from bgworkers.outbox.relay import Relay, RelayConfig
from bgworkers.scheduling.models import ScheduledRun
from bgworkers.scheduling.periodic import CronPeriod
from bgworkers.scheduling.schedule import ScheduledJob
from bgworkers.settings import load_settings
from tests.outbox.helpers import MemoryPublisher
from tests.platform_helpers import captured_json_logs, running_worker, stub_broker, wait_for

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


def test_a_readiness_detail_carries_no_statement_and_no_parameters(
    postgres_engine: Engine,
) -> None:
    """What ``/readyz`` shows of a check that raised a real PostgreSQL error."""

    def failing_check() -> CheckResult:
        with postgres_engine.connect() as connection:
            connection.execute(
                text("INSERT INTO no_such_table (email) VALUES (:email)"), {"email": ADDRESS}
            )
        return CheckResult("database", True, "reachable")

    check = DeadlineCheck("database", failing_check, timeout_s=30.0)
    check.start()
    result = check.wait()
    assert result == CheckResult(
        "database", False, 'UndefinedTable: relation "no_such_table" does not exist'
    )


def test_the_health_reports_outbox_line_carries_no_statement_and_no_parameters(
    postgres_engine: Engine, rabbitmq_url: str
) -> None:
    """``bgworkers health`` reading an outbox table that is gone (a real PostgreSQL error)."""
    with postgres_engine.begin() as connection:
        connection.execute(text("DROP TABLE outbox_messages"))
    out = io.StringIO()
    print_health(load_settings(broker_url=rabbitmq_url), out, now=utcnow())
    lines = [line for line in out.getvalue().splitlines() if line.startswith("outbox")]
    assert lines == [
        'outbox       FAILING  UndefinedTable: relation "outbox_messages" does not exist'
    ]
    report = out.getvalue()
    assert "[parameters:" not in report and "[SQL:" not in report
    assert "SELECT" not in report


def test_a_scheduled_runs_stored_error_carries_no_statement_and_no_parameters(
    postgres_engine: Engine,
) -> None:
    """The job-run row ``bgworkers jobs`` and the console show, for a run that a real
    PostgreSQL error ended."""
    broker = stub_broker()
    period = CronPeriod(ScheduledJob("writes_missing", "* * * * *", "test job"))

    @dramatiq.actor(broker=broker, queue_name=queues.MAINTENANCE, periodic=period, max_retries=0)
    def writes_missing() -> None:
        with session_scope() as session:
            session.execute(
                text("INSERT INTO no_such_table (email) VALUES (:email)"), {"email": ADDRESS}
            )

    def stored_errors() -> list[str | None]:
        with session_scope() as session:
            return [row.error for row in session.exec(select(ScheduledRun))]

    tick = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    with running_worker(broker):
        writes_missing.send_with_options(scheduled_at=tick.isoformat())
        wait_for(lambda: stored_errors() != [None], what="the run's outcome recorded")
    assert stored_errors() == ['UndefinedTable: relation "no_such_table" does not exist']


def test_a_dead_letters_index_row_and_timeline_carry_no_statement_and_no_parameters(
    postgres_engine: Engine,
) -> None:
    """The error, traceback and attempts ``bgworkers dead show`` and the console show, for a
    message that a real PostgreSQL error failed twice (retried, then dead-lettered)."""
    broker = stub_broker()

    @dramatiq.actor(broker=broker, queue_name=queues.MAINTENANCE, max_retries=1, min_backoff=10)
    def writes_missing() -> None:
        with session_scope() as session:
            session.execute(
                text("INSERT INTO no_such_table (email) VALUES (:email)"), {"email": ADDRESS}
            )

    def dead_row() -> DeadLetter | None:
        with session_scope() as session:
            return session.get(DeadLetter, message.message_id)

    with running_worker(broker):
        message = writes_missing.send()
        wait_for(lambda: dead_row() is not None, what="the dead-letter row")
    row = dead_row()
    assert row is not None
    reason = 'UndefinedTable: relation "no_such_table" does not exist'
    assert row.error == reason
    assert row.traceback.rstrip().endswith(reason), row.traceback[-300:]
    with session_scope() as session:
        attempts = [attempt.error for attempt in session.exec(select(Attempt))]
    assert attempts == [reason, reason]
    for stored in (row.error, row.traceback, *attempts):
        assert "[SQL:" not in stored and "[parameters:" not in stored and "LINE 1" not in stored
        assert ADDRESS not in stored and "INSERT" not in stored.replace("cursor.execute", "")


def test_the_dead_letter_index_failing_logs_no_statement_and_no_parameters(
    postgres_engine: Engine,
) -> None:
    """The index's own tables are gone: its write fails with a real PostgreSQL error."""
    with postgres_engine.begin() as connection:
        connection.execute(text("DROP TABLE console_dead_letters, console_attempts"))
    broker = stub_broker()

    @dramatiq.actor(broker=broker, queue_name=queues.MAINTENANCE)
    def refuses(email: str) -> None:
        raise PermanentError("refused")

    def failures() -> list[dict[str, object]]:
        events = ("dead_letter_index_failed", "attempt_not_recorded")
        return [line for line in logs if line["event"] in events]

    with captured_json_logs() as logs, running_worker(broker):
        refuses.send(ADDRESS)
        broker.join(queues.MAINTENANCE, timeout=10_000, fail_fast=False)
    lines = failures()
    assert [line["event"] for line in lines] == ["dead_letter_index_failed"]
    reason = 'UndefinedTable: relation "console_dead_letters" does not exist'
    for line in lines:
        assert line["error"] == reason, line
        assert ADDRESS not in str(line) and "[SQL:" not in str(line)
