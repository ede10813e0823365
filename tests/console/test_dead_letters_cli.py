"""The console's CLI against the real RabbitMQ and PostgreSQL, through a real worker.

A message whose fake dependency fails is dead-lettered, listed, shown, then — once the fake
works — requeued and processed exactly once; purge removes a dead letter from the index and
the XQ; ``send`` with bad arguments fails with one line and enqueues nothing.
"""

from __future__ import annotations

import json
import os
from typing import Any

import dramatiq
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers import queues
from bgworkers.cli.admin import main
from bgworkers.console.models import AuditEntry, DeadLetter
from tests.console import fake_jobs
from tests.platform_helpers import wait_for

pytestmark = pytest.mark.integration


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def rows(out: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out]


def xq_depth(broker: dramatiq.Broker) -> int:
    return int(broker.get_queue_message_counts(queues.MAINTENANCE)[2])  # type: ignore[attr-defined]


def dead_letter_of(broker: dramatiq.Broker, engine: Engine, note_id: int) -> str:
    message = fake_jobs.deliver_note.send(note_id=note_id, text="hi", password="hunter2")

    def indexed() -> bool:
        with Session(engine) as session:
            row = session.get(DeadLetter, message.message_id)
            return row is not None and row.status == "dead"

    wait_for(indexed, what="the dead-letter row")
    wait_for(lambda: xq_depth(broker) >= 1, what="the message in the XQ")
    return message.message_id


def test_dead_letter_listed_shown_fixed_requeued_processed_once(
    postgres_engine: Engine, app_broker, app_worker, capsys, inbox
) -> None:
    message_id = dead_letter_of(app_broker, postgres_engine, 7)

    code, out, _ = cli(capsys, "dead", "list", "--json", "--queue", "maintenance")
    assert code == 0
    [listed] = rows(out)
    assert listed["message_id"] == message_id
    assert (listed["actor"], listed["status"], listed["reason"]) == (
        "deliver_note",
        "dead",
        "permanent_error",
    )
    assert listed["error"] == "PermanentError: inbox refused note 7: mailbox locked"
    assert listed["arguments"]["kwargs"] == {"note_id": 7, "text": "hi", "password": "***"}
    code, out, _ = cli(capsys, "dead", "list")  # the human form: one line per dead letter
    assert code == 0 and len(out) == 1 and message_id in out[0] and "deliver_note" in out[0]
    assert cli(capsys, "dead", "list", "--actor", "nobody", "--json")[1] == []

    code, out, _ = cli(capsys, "dead", "show", message_id)
    text = "\n".join(out)
    assert code == 0
    assert "inbox refused note 7" in text and "Traceback" in text and "hunter2" not in text
    assert 'File "tests/console/fake_jobs.py"' in text  # paths as the reader knows them
    assert os.getcwd() not in text and "site-packages" not in text
    assert cli(capsys, "dead", "show", "no-such-id")[0] == 1

    inbox.broken = False  # the fix
    code, out, _ = cli(capsys, "dead", "requeue", message_id, "--json")
    assert (code, rows(out)) == (0, [{"message_id": message_id, "result": "requeued"}])
    wait_for(lambda: inbox.delivered == [7], what="the requeued message to be processed")
    # A duplicate, if any, is ready in the queue (join waits until none is) or in the worker
    # (its join waits until every delivered message has run).
    app_broker.join(queues.MAINTENANCE, timeout=10_000)
    app_worker.join()
    assert inbox.delivered == [7]
    assert xq_depth(app_broker) == 0
    with Session(postgres_engine) as session:
        row = session.get(DeadLetter, message_id)
        assert row is not None and row.status == "processed"
        [entry] = session.exec(select(AuditEntry).where(AuditEntry.action == "requeue")).all()
        assert entry.target == message_id and entry.who.startswith("cli:")
    # A second requeue finds nothing: it is no longer a dead letter.
    code, out, _ = cli(capsys, "dead", "requeue", message_id, "--json")
    assert (code, rows(out)) == (1, [{"message_id": message_id, "result": "not_found"}])


def test_purge_removes_from_the_index_and_the_xq(
    postgres_engine: Engine, app_broker, app_worker, capsys
) -> None:
    first = dead_letter_of(app_broker, postgres_engine, 1)
    second = dead_letter_of(app_broker, postgres_engine, 2)
    wait_for(lambda: xq_depth(app_broker) == 2, what="two dead letters")

    code, out, _ = cli(capsys, "dead", "purge", first)  # no terminal to confirm on: refused
    assert code == 1 and "not confirmed" in out[0]
    assert xq_depth(app_broker) == 2

    code, out, _ = cli(capsys, "dead", "purge", first, "--yes", "--json")
    assert (code, rows(out)) == (0, [{"message_id": first, "result": "purged"}])
    assert xq_depth(app_broker) == 1  # the other one was given back
    with Session(postgres_engine) as session:
        assert session.get(DeadLetter, first) is None
        assert session.get(DeadLetter, second) is not None
    code, out, _ = cli(capsys, "dead", "list", "--json")
    assert [r["message_id"] for r in rows(out)] == [second]

    code, out, _ = cli(capsys, "dead", "purge", "--all", "--queue", "maintenance", "--yes")
    assert code == 0 and out == [f"{second}  purged"]
    assert xq_depth(app_broker) == 0
    assert cli(capsys, "dead", "list", "--json")[1] == []
    assert cli(capsys, "dead", "purge", "--all", "--yes")[0] == 2  # --all needs --queue


def test_requeue_all_of_a_queue(
    postgres_engine: Engine, app_broker, app_worker, capsys, inbox
) -> None:
    ids = {dead_letter_of(app_broker, postgres_engine, n) for n in (3, 4)}
    wait_for(lambda: xq_depth(app_broker) == 2, what="two dead letters")
    inbox.broken = False
    code, out, _ = cli(capsys, "dead", "requeue", "--all", "--queue", "maintenance", "--json")
    assert code == 0 and {r["message_id"] for r in rows(out)} == ids
    wait_for(lambda: sorted(inbox.delivered) == [3, 4], what="both processed")
    assert xq_depth(app_broker) == 0


def test_send_checks_arguments_and_enqueues_nothing_when_they_are_bad(
    postgres_engine: Engine, app_broker, capsys
) -> None:
    code, _, err = cli(capsys, "send", "deliver_note", "--arg", "note_id=abc")
    assert code == 2
    assert err.count("\n") == 1 and "bad arguments for deliver_note" in err and "note_id" in err
    code, _, err = cli(capsys, "send", "deliver_note", "--arg", "colour=red", "--arg", "note_id=1")
    assert code == 2 and "colour" in err
    code, _, err = cli(capsys, "send", "deliver_note")
    assert code == 2 and "note_id" in err  # missing
    code, _, err = cli(capsys, "send", "no_such_actor")
    assert code == 2 and "unknown actor 'no_such_actor'" in err
    code, _, err = cli(capsys, "send", "deliver_note", "--arg", "oops")
    assert code == 2 and "NAME=VALUE" in err
    assert app_broker.get_queue_message_counts(queues.MAINTENANCE) == (0, 0, 0)

    code, out, _ = cli(capsys, "send", "deliver_note", "--arg", "note_id=5", "--json")
    assert code == 0
    [sent] = rows(out)
    assert sent["actor"] == "deliver_note" and sent["queue"] == "maintenance"
    assert app_broker.get_queue_message_counts(queues.MAINTENANCE)[0] == 1
    with Session(postgres_engine) as session:
        [entry] = session.exec(select(AuditEntry).where(AuditEntry.action == "send")).all()
        assert entry.target == "deliver_note" and sent["message_id"] in entry.detail


def test_queues_lists_every_queue_with_its_counts(
    postgres_engine: Engine, app_broker, capsys
) -> None:
    fake_jobs.deliver_note.send(note_id=9)
    code, out, _ = cli(capsys, "queues", "--json")
    assert code == 0
    by_queue = {r["queue"]: r for r in rows(out) if "queue" in r}
    assert set(by_queue) == set(queues.ALL)
    assert by_queue["urgent"]["lane"] == "urgent" and by_queue["email"]["lane"] == "bulk"
    # The management API's counts lag a few seconds behind: only their presence is checked.
    assert all(isinstance(by_queue["maintenance"][k], int) for k in ("ready", "delayed", "dead"))
    assert set(by_queue["maintenance"]) == {
        "queue", "lane", "ready", "delayed", "dead", "unacked", "consumers", "oldest_age_s",
        "type", "declared",
    }  # fmt: skip
    assert by_queue["maintenance"]["declared"] is True
    # The tests' broker declares classic queues; the type is read from the management API.
    assert by_queue["maintenance"]["type"] == "classic"
    code, out, _ = cli(capsys, "queues")
    assert code == 0 and out[0].split() == [
        "queue",
        "lane",
        "ready",
        "delayed",
        "dead",
        "unacked",
        "consumers",
        "oldest",
        "type",
    ]
    assert out[1].split()[-1] == "classic"
