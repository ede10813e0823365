"""``enqueue``: the message exists if and only if the caller's transaction committed."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.errors import InvalidArguments
from bgworkers.outbox import enqueue, enqueue_many
from bgworkers.outbox.api import RELAY_WAKEUP
from bgworkers.outbox.metrics import read_backlog
from bgworkers.outbox.models import OutboxMessage
from tests.outbox.probe import outbox_probe


def rows(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)))  # type: ignore[arg-type]


def test_rollback_leaves_no_message_and_commit_leaves_one(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        enqueue(session, outbox_probe, "rolled-back")
        session.rollback()
    assert rows(db_engine) == []
    RELAY_WAKEUP.clear()
    with Session(db_engine) as session:
        result = enqueue(session, outbox_probe, "kept", size=3)
        assert not RELAY_WAKEUP.is_set()  # the relay is woken by the commit, not before
        session.commit()
    assert RELAY_WAKEUP.is_set()
    [row] = rows(db_engine)
    assert (row.id, row.message_id, result.duplicate) == (result.id, result.message_id, False)
    envelope = json.loads(row.body)
    assert envelope["actor_name"] == "outbox_probe" and envelope["queue_name"] == "maintenance"
    assert (envelope["args"], envelope["kwargs"]) == (["kept"], {"size": 3})
    assert envelope["message_id"] == row.message_id
    assert row.published_at is None and row.available_at == row.created_at


def test_a_repeated_dedupe_key_is_a_no_op_that_says_so(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        first = enqueue(session, outbox_probe, "a", dedupe_key="k")
        session.commit()
    with Session(db_engine) as session:
        again = enqueue(session, "outbox_probe", "b", dedupe_key="k")
        session.commit()
    assert again.duplicate and (again.id, again.message_id) == (first.id, first.message_id)
    [row] = rows(db_engine)
    assert json.loads(row.body)["args"] == ["a"]


def test_bad_calls_fail_in_the_caller(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        with pytest.raises(InvalidArguments, match="size: Input should be a valid integer"):
            enqueue(session, outbox_probe, "k", size="many")
        with pytest.raises(InvalidArguments, match="missing a required argument"):
            enqueue(session, outbox_probe)
        with pytest.raises(InvalidArguments, match="no actor named 'nope'"):
            enqueue(session, "nope")
        with pytest.raises(InvalidArguments, match="at most 1000 characters"):
            enqueue(session, outbox_probe, "x" * 300_000)  # @task's bound on str arguments
        with pytest.raises(InvalidArguments, match="dedupe key"):
            enqueue(session, outbox_probe, "k", dedupe_key="")
        session.commit()
    assert rows(db_engine) == []


def test_delay_and_options_are_recorded(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        enqueue(session, outbox_probe, "later", delay_ms=90_000, message_options={"max_retries": 1})
        session.commit()
        backlog = read_backlog(session, now=rows(db_engine)[0].created_at + timedelta(minutes=5))
    [row] = rows(db_engine)
    assert row.available_at - row.created_at == timedelta(seconds=90)
    assert json.loads(row.body)["options"] == {"max_retries": 1}
    assert backlog.count == 1 and backlog.oldest_age_s == pytest.approx(210)


def test_enqueue_many_writes_in_chunks_and_skips_repeated_keys(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        written = enqueue_many(
            session, outbox_probe, ((f"k{i}",) for i in range(2_500)), dedupe_key=lambda a: a[0]
        )
        session.commit()
        again = enqueue_many(
            session,
            outbox_probe,
            ((f"k{i}",) for i in range(2_400, 2_600)),
            dedupe_key=lambda a: a[0],
        )
        session.commit()
    assert (written, again) == (2_500, 100)
    stored = rows(db_engine)
    assert [json.loads(r.body)["args"][0] for r in stored] == [f"k{i}" for i in range(2_600)]
    with Session(db_engine) as session, pytest.raises(InvalidArguments):
        enqueue_many(session, outbox_probe, [("ok",), (1, 2, 3)])
