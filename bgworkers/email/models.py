"""The email outbox table."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, Text, text
from sqlmodel import Field, SQLModel

from bgworkers.db.engine import UtcDateTime, utcnow


class EmailStatus(StrEnum):
    QUEUED = "queued"  # waiting to be claimed by a sender
    SENDING = "sending"  # claimed; recovered by the sweep if it stays so past the timeout
    SENT = "sent"  # the SMTP server accepted it
    FAILED = "failed"  # permanent refusal or attempts exhausted (see last_error)


class OutboxEmail(SQLModel, table=True):
    """An email to deliver, at most once per ``idempotency_key``.

    ``dispatch_after`` is when the sweep may hand the row to a ``send_email`` message
    (again): set a little ahead whenever a message is already on its way, so the sweep
    does not pile duplicates onto a backlog. ``claim_token`` identifies the sender holding
    a ``sending`` row, so a recovered row's late first sender cannot overwrite the outcome.
    """

    __tablename__ = "email_outbox"
    __table_args__ = (
        Index("ix_email_outbox_status_dispatch_after", "status", "dispatch_after"),
        Index("ix_email_outbox_status_claimed_at", "status", "claimed_at"),
        # A user's backup finds the user's emails by ``lower(recipient)``: without this
        # index that query reads the whole outbox.
        Index("ix_email_outbox_recipient_lower", text("lower(recipient)")),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True, index=True)
    recipient: str = Field(max_length=320)
    subject: str = Field(max_length=500)
    body_text: str = Field(sa_type=Text)
    body_html: str | None = Field(default=None, sa_type=Text)
    status: str = Field(default=EmailStatus.QUEUED, max_length=16)
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, max_length=2000)
    dispatch_after: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    claimed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    claim_token: str | None = Field(default=None, max_length=36)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
