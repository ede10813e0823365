"""Tables shared by every domain: users and their login sessions.

The application owns user sign-up; bgworkers reads users to work on their behalf and keeps
``UserSession`` rows tidy (``cleanup_old_sessions``).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from bgworkers.db.engine import UtcDateTime, utcnow


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, index=True, unique=True)
    display_name: str = Field(default="", max_length=200)
    #: IANA zone name (``Europe/Paris``); reminders are entered and summaries sent in it.
    timezone: str = Field(default="UTC", max_length=64)
    daily_summary_enabled: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class UserSession(SQLModel, table=True):
    __tablename__ = "user_sessions"

    id: str = Field(primary_key=True, max_length=128)
    user_id: int = Field(foreign_key="users.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime, index=True)
