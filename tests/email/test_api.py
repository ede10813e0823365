"""The email domain's public API as other domains use it: cancelling queued emails by key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bgworkers.email.api import cancel_queued_emails, enqueue_email, is_email_address
from bgworkers.email.models import EmailStatus, OutboxEmail

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def add(session: Session, key: str, status: EmailStatus = EmailStatus.QUEUED) -> None:
    row = enqueue_email(
        session=session,
        recipient="ada@example.org",
        subject="s",
        text="t",
        idempotency_key=key,
        now=NOW,
        dispatch=lambda _: None,
    )
    row.status = status
    session.add(row)


def test_cancel_queued_emails_fails_only_queued_rows_of_the_prefix(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        add(session, "reminder:1:20261125T090000Z")
        add(session, "reminder:1:20261126T090000Z")
        add(session, "reminder:1:20261124T090000Z", EmailStatus.SENT)
        add(session, "reminder:1:20261123T090000Z", EmailStatus.SENDING)
        add(session, "reminder:10:20261125T090000Z")  # another reminder: "1" is not "10"
        add(session, "axb:1")
        session.commit()
        later = NOW + timedelta(minutes=5)
        count = cancel_queued_emails(
            session=session, key_prefix="reminder:1:", reason="reminder cancelled", now=later
        )
        # "_" in a prefix is a plain character, not a LIKE wildcard matching "x".
        assert cancel_queued_emails(session=session, key_prefix="a_b:", reason="r") == 0
        session.commit()
        assert count == 2
        rows = {row.idempotency_key: row for row in session.exec(select(OutboxEmail))}
    assert {key for key, row in rows.items() if row.status == EmailStatus.FAILED} == {
        "reminder:1:20261125T090000Z",
        "reminder:1:20261126T090000Z",
    }
    cancelled = rows["reminder:1:20261125T090000Z"]
    assert cancelled.last_error == "reminder cancelled" and cancelled.updated_at == later
    assert rows["reminder:1:20261124T090000Z"].status == EmailStatus.SENT
    assert rows["reminder:1:20261123T090000Z"].status == EmailStatus.SENDING
    assert rows["reminder:10:20261125T090000Z"].status == EmailStatus.QUEUED
    assert rows["axb:1"].status == EmailStatus.QUEUED


def test_is_email_address_is_part_of_the_api() -> None:
    assert is_email_address("ada@example.org")
    assert not is_email_address("Ada <ada@example.org>")
