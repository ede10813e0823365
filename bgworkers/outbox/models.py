"""The outbox tables: messages waiting to be published, and the relay's lease."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Integer, Text
from sqlmodel import Field, SQLModel

from bgworkers.db.engine import UtcDateTime, utcnow

#: On SQLite only ``INTEGER PRIMARY KEY`` is an auto-incrementing row id.
ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class OutboxMessage(SQLModel, table=True):
    """One dramatiq message, written in the caller's transaction, published by the relay.

    ``body`` is the encoded dramatiq envelope for the actor's own queue; ``available_at`` is
    when it may run (later than ``created_at`` for a delayed message, which the relay sends
    to ``<queue>.DQ`` with that ``eta``). ``published_at`` is set only after RabbitMQ
    confirmed the publish. ``dedupe_key`` (unique) makes a repeated enqueue a no-op.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_published_at_id", "published_at", "id"),)

    id: int | None = Field(default=None, sa_column=Column(ID_TYPE, primary_key=True))
    queue: str = Field(max_length=100)
    actor: str = Field(max_length=200)
    message_id: str = Field(max_length=36)
    body: str = Field(sa_type=Text)
    dedupe_key: str | None = Field(default=None, max_length=200, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    available_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    published_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, max_length=500)


class OutboxRelayLease(SQLModel, table=True):
    """Who relays now: the one process whose lease has not expired publishes."""

    __tablename__ = "outbox_relay_lease"

    name: str = Field(primary_key=True, max_length=50)
    holder: str = Field(max_length=200)
    expires_at: datetime = Field(sa_type=UtcDateTime)
