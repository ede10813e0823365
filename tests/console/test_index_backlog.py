"""Dead letters that fell in a database outage reach the index once the database is back."""

from __future__ import annotations

from datetime import UTC, datetime

import dramatiq
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers import queues
from bgworkers.console.dead_letters import Failure
from bgworkers.console.middleware import DeadLetterIndex, IndexBacklog
from bgworkers.console.models import DeadLetter
from bgworkers.db.engine import make_engine, use_engine
from bgworkers.errors import PermanentError
from tests.platform_helpers import running_worker, stub_broker, wait_for


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def failure(n: int) -> Failure:
    return Failure(
        message_id=f"m-{n}",
        queue="email",
        actor="send_email",
        args=[n],
        kwargs={},
        options={},
        reason="permanent_error",
        exception=None,
        at=datetime(2026, 11, 25, tzinfo=UTC),
    )


def test_the_backlog_waits_between_tries_keeps_order_and_stays_bounded() -> None:
    clock = Clock()
    backlog = IndexBacklog(max_items=3, retry_every_s=10, clock=clock)
    for n in range(5):
        backlog.add(failure(n))
    assert len(backlog) == 3 and backlog.dropped == 2
    written: list[str] = []
    assert backlog.flush(lambda f: written.append(f.message_id)) == 0  # too early
    clock.now = 10

    def fail_on_third(f: Failure) -> None:
        if f.message_id == "m-4":
            raise OSError("still away")
        written.append(f.message_id)

    with pytest.raises(OSError):
        backlog.flush(fail_on_third)
    assert written == ["m-2", "m-3"] and len(backlog) == 1
    clock.now = 20
    assert backlog.flush(lambda f: written.append(f.message_id)) == 1
    assert written == ["m-2", "m-3", "m-4"] and len(backlog) == 0


def test_a_dead_letter_of_the_outage_is_indexed_after_the_next_message(
    sqlite_engine: Engine,
) -> None:
    broker = stub_broker()
    [index] = [m for m in broker.middleware if isinstance(m, DeadLetterIndex)]
    index.backlog.retry_every_s = 0

    @dramatiq.actor(broker=broker, queue_name=queues.EMAIL)
    def refused() -> None:
        raise PermanentError("no such address")

    @dramatiq.actor(broker=broker, queue_name=queues.EMAIL)
    def fine() -> None:
        return None

    away = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    use_engine(away)
    with running_worker(broker):
        lost = refused.send()
        wait_for(lambda: len(index.backlog) == 1, what="the dead letter kept for later")
        use_engine(sqlite_engine)  # the database is back
        fine.send()
        wait_for(lambda: len(index.backlog) == 0, what="the backlog written")
    away.dispose()
    with Session(sqlite_engine) as session:
        row = session.get(DeadLetter, lost.message_id)
    assert row is not None and row.reason == "permanent_error"
    assert "no such address" in row.error
