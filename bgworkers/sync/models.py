"""Tables of the sync domain: per-user connections (credentials and progress) and synced items.

Progress lives on the connection row and is committed with each page of results, so a sync
that stops half-way (crash, time limit, an API error) resumes from the last committed page
token or cursor instead of starting over. Every table carries ``user_id`` (the per-user backup
finds a user's data that way); the connection tables mark their credential columns in the
table's ``info`` (:mod:`bgworkers.db.tables`) so an exporter can leave them out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from bgworkers.db.engine import UtcDateTime, utcnow
from bgworkers.db.tables import RESTORED_VALUES, SECRET_COLUMNS

#: A connection the periodic fan-out syncs.
STATUS_ACTIVE: Final = "active"
#: A rate-limit storm: a run of this connection was paused and its message is sent again for
#: when the pause ends; the fan-out leaves it to that message (one chain per connection).
#: bgworkers sets it back to ``active`` when the chain ends.
STATUS_PAUSED: Final = "paused"
#: The provider refused our credentials even after a refresh: the user must reconnect.
#: The application sets the status back to ``active`` when it stores new tokens.
STATUS_REAUTH_REQUIRED: Final = "reauth_required"

#: A restored connection has no credentials (archives leave them out): it needs reconnecting.
_RESTORED_AS_REAUTH = {RESTORED_VALUES: {"status": STATUS_REAUTH_REQUIRED}}


class CalendarConnection(SQLModel, table=True):
    """A user's connected Google calendar: OAuth tokens and incremental-sync progress.

    ``sync_token`` is Google's ``nextSyncToken`` from the last complete listing; while a
    listing is in progress ``page_token`` holds the next page to fetch. ``generation`` grows
    at the start of every full listing; events not seen by a complete full listing (an older
    generation) are deleted at its end, because a full listing never reports deletions.
    """

    __tablename__ = "calendar_connections"
    __table_args__ = (
        {"info": {SECRET_COLUMNS: ("access_token", "refresh_token"), **_RESTORED_AS_REAUTH}},
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE", unique=True, index=True)
    calendar_id: str = Field(default="primary", max_length=255)
    access_token: str = Field(default="", max_length=4096, repr=False)
    access_token_expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    refresh_token: str = Field(default="", max_length=4096, repr=False)
    sync_token: str | None = Field(default=None, max_length=4096, repr=False)
    page_token: str | None = Field(default=None, max_length=4096, repr=False)
    generation: int = Field(default=0)
    status: str = Field(default=STATUS_ACTIVE, max_length=32, index=True)
    last_error: str | None = Field(default=None, max_length=500)
    last_error_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_synced_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class CalendarEvent(SQLModel, table=True):
    """One event (or one instance of a recurring event) of a user's calendar.

    All-day events have ``all_day`` set and ``starts_at``/``ends_at`` at midnight UTC of their
    dates (``ends_at`` exclusive, as Google gives it); read only the date part of those.
    ``updated_at`` is when this row was last written; ``remote_updated_at`` is Google's.
    """

    __tablename__ = "calendar_events"
    __table_args__ = (
        UniqueConstraint(
            "user_id", "calendar_id", "external_id", name="uq_calendar_events_user_calendar_ext"
        ),
        Index("ix_calendar_events_user_starts", "user_id", "starts_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    calendar_id: str = Field(max_length=255)
    external_id: str = Field(max_length=1024)
    title: str = Field(default="", max_length=1024)
    starts_at: datetime = Field(sa_type=UtcDateTime)
    ends_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    all_day: bool = Field(default=False)
    status: str = Field(default="confirmed", max_length=16)
    remote_updated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    sync_generation: int = Field(default=0)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class NotionConnection(SQLModel, table=True):
    """A user's Notion integration token and the cursor of the listing in progress.

    ``generation`` grows at the start of every listing; pages not seen by a complete listing
    (an older generation) are marked archived at its end, because Notion's search leaves out
    pages that were trashed or unshared instead of reporting them.
    """

    __tablename__ = "notion_connections"
    __table_args__ = ({"info": {SECRET_COLUMNS: ("access_token",), **_RESTORED_AS_REAUTH}},)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE", unique=True, index=True)
    access_token: str = Field(default="", max_length=4096, repr=False)
    cursor: str | None = Field(default=None, max_length=1024, repr=False)
    generation: int = Field(default=0)
    status: str = Field(default=STATUS_ACTIVE, max_length=32, index=True)
    last_error: str | None = Field(default=None, max_length=500)
    last_error_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_synced_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class NotionPage(SQLModel, table=True):
    """A Notion page the user shared with the integration (title, link, edit time, archived)."""

    __tablename__ = "notion_pages"
    __table_args__ = (UniqueConstraint("user_id", "notion_id", name="uq_notion_pages_user_notion"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    notion_id: str = Field(max_length=64)
    title: str = Field(default="", max_length=2000)
    url: str = Field(default="", max_length=2048)
    last_edited_time: datetime = Field(sa_type=UtcDateTime)
    archived: bool = Field(default=False)
    sync_generation: int = Field(default=0)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class RateLimitSlot(SQLModel, table=True):
    """The next free request slot of one rate-limited credential (or a provider's global cap).

    Shared by every worker process on every host through the database: a request reserves
    ``next_at`` and moves it one interval on, in one locked transaction (see
    :mod:`bgworkers.sync.shared_limits`). Times are the database server's clock, in seconds
    since the epoch, so hosts with skewed clocks still agree. ``key`` is a provider prefix and
    a hash of the credential (never the credential itself), or a user id for Google's per-user
    quota.
    """

    __tablename__ = "rate_limit_slots"

    key: str = Field(primary_key=True, max_length=120)
    next_at: float = Field(default=0.0)
    #: Set from a 429's ``Retry-After``: no slot of this key is granted before it.
    paused_until: float = Field(default=0.0)
    #: Seconds requests of this key have waited for their slots, all processes together.
    waited_s: float = Field(default=0.0)
