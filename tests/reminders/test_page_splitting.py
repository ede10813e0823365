"""A page whose transaction fails as a whole hands its items on alone; an outage retries it.

The whole-page failure is real: a trigger on the email table refuses one recipient (as a
constraint of the database would), so the page's one INSERT of emails fails on PostgreSQL.
A real worker on RabbitMQ runs the pages and the per-item messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bgworkers.db.engine import session_scope
from bgworkers.email.models import OutboxEmail
from bgworkers.outbox.models import OutboxMessage
from bgworkers.reminders.actors import (
    check_due_reminders,
    fire_reminder,
    fire_reminder_page,
    send_daily_email_summary,
    send_user_daily_summary,
)
from bgworkers.reminders.models import DailySummary, Reminder, ReminderStatus
from bgworkers.reminders.splitting import write_page_or_split
from tests.platform_helpers import wait_for
from tests.reminders.helpers import RecordingMailer, due_reminder, settle, zone_at

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("db_engine", ["postgresql"], indirect=True),
]

POISONED = "poisoned@example.org"
#: Seconds within which the healthy items of a failed page must arrive: the page's own
#: retries (5, from 5 s of backoff doubling) would take minutes.
PROMPTLY_S = 20


def refuse_inserts(engine: Engine, *, table: str, when: str, errcode: str) -> None:
    """A trigger that fails each INSERT into ``table`` whose row (``NEW``) matches ``when``
    with the SQLSTATE ``errcode``, as a constraint of the database would."""
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF {when} THEN RAISE EXCEPTION 'row refused' USING ERRCODE = '{errcode}'; "
                "END IF; RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION refuse_{table}()"
            )
        )


def refuse_poisoned_recipient(engine: Engine, errcode: str) -> None:
    when = f"NEW.recipient = '{POISONED}'"
    refuse_inserts(engine, table="email_outbox", when=when, errcode=errcode)


def refuse_poisoned_recipient_at_commit(engine: Engine) -> None:
    """A deferred constraint trigger: the page's statements all pass and its commit fails."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.recipient = '{POISONED}' THEN "
                "RAISE EXCEPTION 'row refused' USING ERRCODE = 'check_violation'; END IF; "
                "RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON email_outbox "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()"
            )
        )


def accept_every_recipient(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse_email_outbox ON email_outbox"))


@pytest.fixture
def short_item_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-item actors give up after one retry 0.1 s later (5 retries over minutes in
    production), so a test sees their give-up."""
    for actor in (fire_reminder, send_user_daily_summary):
        monkeypatch.setitem(actor.options, "max_retries", 1)
        monkeypatch.setitem(actor.options, "min_backoff", 100)


def status(engine: Engine, reminder_id: int) -> str:
    with Session(engine) as session:
        row = session.get(Reminder, reminder_id)
        assert row is not None
        return row.status


def recipients(mailer: RecordingMailer) -> list[str]:
    return sorted(str(m["To"]) for m in mailer.sent)


def messages_of(engine: Engine, actor: dramatiq.Actor[..., Any]) -> int:
    """How many messages for ``actor`` the outbox recorded."""
    with Session(engine) as session:
        rows = session.exec(
            select(OutboxMessage).where(col(OutboxMessage.actor) == actor.actor_name)
        )
        return len(rows.all())


def count(registry: Any, metric: str, queue: str, actor: str) -> float:
    sample = registry.get_sample_value(metric, {"queue": queue, "actor": actor})
    return float(sample or 0)


def wait_until_split(
    mailer: RecordingMailer, registry: Any, healthy: int, per_item: tuple[str, str]
) -> None:
    """Until the page's ``healthy`` items were mailed, each by its own message, and the
    poisoned item's own message (``per_item``: queue, actor) was dead-lettered."""
    wait_for(
        lambda: len(mailer.sent) >= healthy,
        timeout_s=PROMPTLY_S,
        what="the page's other items, each by its own message",
    )
    wait_for(
        lambda: count(registry, "bgworkers_messages_dead_lettered_total", *per_item) >= 1,
        timeout_s=30,
        what="the poisoned item's own message to give up",
    )


def test_a_reminder_page_that_fails_whole_fires_the_others_at_once_and_closes_the_poisoned(
    db_engine: Engine,
    make_user: Callable[..., int],
    rabbit_worker: dramatiq.Worker,
    app_broker: dramatiq.Broker,
    mailer: RecordingMailer,
    registry: Any,
    short_item_retries: None,
) -> None:
    refuse_poisoned_recipient(db_engine, "check_violation")
    users = [make_user() for _ in range(4)]
    healthy = [due_reminder(u, text=f"Task {n}") for n, u in enumerate(users)]
    poisoned = due_reminder(make_user(email=POISONED), text="Poisoned")
    check_due_reminders.send()
    wait_for(
        lambda: len(mailer.sent) >= len(healthy),
        timeout_s=PROMPTLY_S,
        what="the page's other reminders, each by its own message",
    )
    wait_for(
        lambda: status(db_engine, poisoned) == ReminderStatus.FAILED,
        timeout_s=30,
        what="the poisoned reminder closed by its own message's give-up",
    )
    settle(app_broker)
    assert recipients(mailer) == [f"user{n}@example.org" for n in range(1, 5)]
    with Session(db_engine) as session:
        closed = session.get(Reminder, poisoned)
        assert closed is not None and closed.last_error is not None
        assert closed.last_error == "firing failed: CheckViolation: row refused"
        assert all(session.get(Reminder, r).status == ReminderStatus.FIRED for r in healthy)  # type: ignore[union-attr]
    page = ("reminders", "fire_reminder_page")
    assert count(registry, "bgworkers_messages_retried_total", *page) == 0  # split at once
    assert count(registry, "bgworkers_messages_dead_lettered_total", *page) == 0
    assert messages_of(db_engine, fire_reminder) == len(healthy) + 1
    fired = {"recurring": "false"}  # counted once, by the messages that fired them
    assert registry.get_sample_value("bgworkers_reminders_fired_total", fired) == len(healthy)
    check_due_reminders.send()  # nothing is due any more: the poisoned one is closed
    settle(app_broker)
    assert len(mailer.sent) == len(healthy)
    assert status(db_engine, poisoned) == ReminderStatus.FAILED


def test_a_summary_page_that_fails_whole_sends_the_others_once_and_not_the_poisoned(
    db_engine: Engine,
    make_user: Callable[..., int],
    rabbit_worker: dramatiq.Worker,
    app_broker: dramatiq.Broker,
    mailer: RecordingMailer,
    registry: Any,
    short_item_retries: None,
) -> None:
    refuse_poisoned_recipient(db_engine, "check_violation")
    zone = zone_at(9)
    healthy = [make_user(timezone=zone) for _ in range(3)]
    poisoned = make_user(timezone=zone, email=POISONED)
    send_daily_email_summary.send()
    wait_until_split(mailer, registry, len(healthy), ("email", "send_user_daily_summary"))
    settle(app_broker)
    send_daily_email_summary.send()  # a later run the same morning: only the poisoned is due
    settle(app_broker)
    assert recipients(mailer) == [f"user{n}@example.org" for n in range(1, 4)]
    with Session(db_engine) as session:
        done = sorted(r.user_id for r in session.exec(select(DailySummary)).all())
        keys = session.exec(select(OutboxEmail.idempotency_key)).all()
    assert done == healthy and poisoned not in done
    assert len(keys) == len(set(keys)) == len(healthy)
    page = ("email", "send_daily_summary_page")
    assert count(registry, "bgworkers_messages_retried_total", *page) == 0
    assert count(registry, "bgworkers_messages_dead_lettered_total", *page) == 0


def test_a_page_that_fails_at_its_commit_counts_and_logs_each_reminder_once(
    db_engine: Engine,
    make_user: Callable[..., int],
    rabbit_worker: dramatiq.Worker,
    app_broker: dramatiq.Broker,
    mailer: RecordingMailer,
    registry: Any,
    short_item_retries: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The page fires its reminders and closes one whose address is bad, then its commit
    fails and it is split: its rollback undid all that, so only the per-item messages (which
    do it again) count the fired and failed reminders and log ``reminder_failed``."""
    refuse_poisoned_recipient_at_commit(db_engine)
    healthy = [due_reminder(make_user(), text=f"Task {n}") for n in range(3)]
    bad_address = due_reminder(make_user(email="broken"), text="Bad address")
    poisoned = due_reminder(make_user(email=POISONED), text="Poisoned")
    check_due_reminders.send()
    wait_for(
        lambda: status(db_engine, poisoned) == ReminderStatus.FAILED,
        timeout_s=30,
        what="the poisoned reminder closed by its own message's give-up",
    )
    settle(app_broker)
    assert len(mailer.sent) == len(healthy)
    assert status(db_engine, bad_address) == ReminderStatus.FAILED
    fired = {"recurring": "false"}
    assert registry.get_sample_value("bgworkers_reminders_fired_total", fired) == len(healthy)
    assert registry.get_sample_value("bgworkers_reminders_failed_total") == 2
    assert caplog.text.count("event='reminder_failed'") == 2


def test_a_summary_page_that_fails_at_its_commit_counts_each_summary_once(
    db_engine: Engine,
    make_user: Callable[..., int],
    rabbit_worker: dramatiq.Worker,
    app_broker: dramatiq.Broker,
    mailer: RecordingMailer,
    registry: Any,
    short_item_retries: None,
) -> None:
    refuse_poisoned_recipient_at_commit(db_engine)
    zone = zone_at(9)
    healthy = [make_user(timezone=zone) for _ in range(3)]
    make_user(timezone=zone, email=POISONED)
    send_daily_email_summary.send()
    per_user = ("email", "send_user_daily_summary")
    wait_for(
        lambda: count(registry, "bgworkers_messages_dead_lettered_total", *per_user) >= 1,
        timeout_s=30,
        what="the poisoned user's own message to give up",
    )
    settle(app_broker)
    assert len(mailer.sent) == len(healthy)
    assert registry.get_sample_value("bgworkers_summaries_sent_total") == len(healthy)


def test_an_outage_retries_the_page_without_splitting_it(
    db_engine: Engine,
    make_user: Callable[..., int],
    rabbit_worker: dramatiq.Worker,
    app_broker: dramatiq.Broker,
    mailer: RecordingMailer,
    registry: Any,
) -> None:
    """A serialization failure says nothing about the reminders: the page is retried whole
    and, once the database lets it through, fires every reminder itself, once."""
    refuse_poisoned_recipient(db_engine, "serialization_failure")
    users = [make_user() for _ in range(3)] + [make_user(email=POISONED)]
    reminders = [due_reminder(u, text=f"Task {n}") for n, u in enumerate(users)]
    check_due_reminders.send()
    page = ("reminders", "fire_reminder_page")
    wait_for(
        lambda: count(registry, "bgworkers_messages_retried_total", *page) >= 1,
        timeout_s=30,
        what="the page's first retry",
    )
    assert messages_of(db_engine, fire_reminder) == 0
    assert {status(db_engine, r) for r in reminders} == {ReminderStatus.SCHEDULED}
    accept_every_recipient(db_engine)  # the database lets the page through again
    wait_for(lambda: len(mailer.sent) >= len(users), timeout_s=60, what="the retried page")
    settle(app_broker)
    assert len(mailer.sent) == len(users) and POISONED in recipients(mailer)
    assert messages_of(db_engine, fire_reminder) == 0
    assert {status(db_engine, r) for r in reminders} == {ReminderStatus.FIRED}


def test_a_page_whose_item_looks_like_an_outage_is_split_on_its_first_retry(
    db_engine: Engine,
    make_user: Callable[..., int],
    rabbit_worker: dramatiq.Worker,
    app_broker: dramatiq.Broker,
    mailer: RecordingMailer,
    registry: Any,
    short_item_retries: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One row's serialization failure, for ever: the page is retried once as for an outage,
    and that retry splits it (not the last of its 5), so the others fire and the page is not
    dead-lettered (to be handed out again with the same poisoned row). The poisoned reminder's
    own message sees an outage too: it is not closed, only its own message is dead-lettered."""
    monkeypatch.setitem(fire_reminder_page.options, "min_backoff", 100)  # retries as in production
    refuse_poisoned_recipient(db_engine, "serialization_failure")
    healthy = [due_reminder(make_user(), text=f"Task {n}") for n in range(3)]
    poisoned = due_reminder(make_user(email=POISONED), text="Poisoned")
    check_due_reminders.send()
    wait_until_split(mailer, registry, len(healthy), ("reminders", "fire_reminder"))
    settle(app_broker)
    assert recipients(mailer) == [f"user{n}@example.org" for n in range(1, 4)]
    assert {status(db_engine, r) for r in healthy} == {ReminderStatus.FIRED}
    assert status(db_engine, poisoned) == ReminderStatus.SCHEDULED  # an outage closes nothing
    page = ("reminders", "fire_reminder_page")
    assert count(registry, "bgworkers_messages_retried_total", *page) == 1
    assert count(registry, "bgworkers_messages_dead_lettered_total", *page) == 0
    assert messages_of(db_engine, fire_reminder) == len(healthy) + 1


def test_a_page_whose_delivery_fails_after_its_commit_is_not_split_and_sends_nothing_twice(
    db_engine: Engine,
    make_user: Callable[..., int],
    rabbit_worker: dramatiq.Worker,
    app_broker: dramatiq.Broker,
    mailer: RecordingMailer,
    registry: Any,
) -> None:
    """The page committed and sent its emails; recording one as sent is refused. The items
    are written, so the page is retried as before (not split), and its retry finds every
    reminder fired: it writes and sends nothing again."""
    with db_engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse_sent() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.status = 'sent' AND NEW.recipient = '{POISONED}' THEN "
                "RAISE EXCEPTION 'row refused' USING ERRCODE = 'check_violation'; END IF; "
                "RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse_sent BEFORE UPDATE ON email_outbox "
                "FOR EACH ROW EXECUTE FUNCTION refuse_sent()"
            )
        )
    users = [make_user() for _ in range(3)] + [make_user(email=POISONED)]
    reminders = [due_reminder(u, text=f"Task {n}") for n, u in enumerate(users)]
    check_due_reminders.send()
    page = ("reminders", "fire_reminder_page")
    wait_for(
        lambda: count(registry, "bgworkers_messages_processed_total", *page) >= 2,
        timeout_s=30,
        what="the page to fail after its commit, and its retry",
    )
    settle(app_broker)
    assert count(registry, "bgworkers_messages_retried_total", *page) == 1
    assert len(mailer.sent) == len(users)
    assert messages_of(db_engine, fire_reminder) == 0
    assert {status(db_engine, r) for r in reminders} == {ReminderStatus.FIRED}
    assert count(registry, "bgworkers_messages_dead_lettered_total", *page) == 0


def test_a_page_whose_items_cannot_be_handed_on_raises_its_own_error(
    db_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Recording the per-item messages fails too (the database refuses the outbox rows):
    the page's own error propagates, so its retry policy applies as before."""
    refuse_inserts(db_engine, table="outbox_messages", when="true", errcode="check_violation")

    def write() -> list[int]:
        raise ValueError("the page's own failure")

    with session_scope(db_engine) as session, pytest.raises(ValueError, match="own failure"):
        write_page_or_split(session, write, per_item=fire_reminder, items=[(1,), (2,)])
    assert messages_of(db_engine, fire_reminder) == 0
    assert "page_not_split" in caplog.text and "CheckViolation: row refused" in caplog.text
