"""Tables of the console: the dead-letter index, attempts, the audit log, login failures."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from bgworkers.db.engine import UtcDateTime


class DeadLetter(SQLModel, table=True):
    """One dead-lettered message; the message itself stays in ``<queue>.XQ``.

    ``status``: ``dead`` (in the XQ), ``requeued`` (sent back to its queue by an operator) or
    ``processed`` (a requeued copy then succeeded). ``arguments`` is redacted JSON, capped at
    :data:`~bgworkers.console.dead_letters.ARGUMENTS_MAX_CHARS`; ``dead_count`` counts how many
    times the message was dead-lettered (a requeued message may fail again). ``trace_id``: the
    message's OpenTelemetry trace (32 hex digits) when it carried a ``traceparent``, else "".
    """

    __tablename__ = "console_dead_letters"

    message_id: str = Field(primary_key=True, max_length=64)
    queue: str = Field(max_length=100, index=True)
    actor: str = Field(max_length=200, index=True)
    arguments: str = Field(default="")
    retries: int = Field(default=0)
    reason: str = Field(default="", max_length=50)
    error: str = Field(default="", max_length=1000)
    traceback: str = Field(default="")
    first_failed_at: datetime = Field(sa_type=UtcDateTime)
    last_failed_at: datetime = Field(sa_type=UtcDateTime, index=True)
    dead_count: int = Field(default=1)
    status: str = Field(default="dead", max_length=20)
    requeued_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    trace_id: str = Field(default="", max_length=32)


class Attempt(SQLModel, table=True):
    """One run of a message that did not simply succeed at once (``outcome``: ``retried``,
    ``dead`` or ``succeeded``); ``duration_s`` in seconds. See docs/console.md ("Timelines")."""

    __tablename__ = "console_attempts"

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=64, index=True)
    attempt: int = Field(default=1)
    started_at: datetime = Field(sa_type=UtcDateTime, index=True)
    duration_s: float = Field(default=0.0)
    outcome: str = Field(max_length=20)
    error: str = Field(default="", max_length=500)


class AuditEntry(SQLModel, table=True):
    """One operator action: who did what to which target, and when."""

    __tablename__ = "console_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UtcDateTime, index=True)
    who: str = Field(max_length=200)
    action: str = Field(max_length=50)
    target: str = Field(default="", max_length=300)
    detail: str = Field(default="", max_length=1000)


class LoginFailures(SQLModel, table=True):
    """Recent failed console logins of one client address or user name (the login throttle,
    :mod:`bgworkers.console.web.throttle`, says why in the database). ``key``:
    ``client:<address>`` or ``user:<name>``; ``last_failed_at``: Unix seconds."""

    __tablename__ = "console_login_failures"

    key: str = Field(primary_key=True, max_length=120)
    failures: int = Field(default=0)
    last_failed_at: float = Field(index=True)
