"""Plain helpers of these tests (functions, classes, constants); fixtures stay in conftest."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import dramatiq
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers.db.engine import session_scope, utcnow
from bgworkers.reminders.api import create_reminder


class RecordingMailer:
    """A mailer that keeps what it is given (the SMTP path is tested in tests/email)."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self._lock = threading.Lock()

    def send(self, message: EmailMessage) -> None:
        with self._lock:
            self.sent.append(message)

    def send_bytes(self, *, sender: str, recipients: list[str], data: bytes) -> None:
        message = message_from_bytes(data, policy=policy.default)
        assert isinstance(message, EmailMessage) and recipients == [message["To"]]
        self.send(message)

    def close(self) -> None:
        return None


#: Reminders below are created at 08:00 UTC, due at 10:00 in Paris (09:00 UTC).
CREATED = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


DUE = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # 10:00 in Paris


def new_reminder(engine: Engine, user_id: int, recurrence: str | None = None) -> int:
    with Session(engine) as session:
        row = create_reminder(
            session=session,
            user_id=user_id,
            text="Water the plants",
            due_at=datetime(2026, 11, 25, 10, 0),
            recurrence=recurrence,
            now=CREATED,
        )
        session.commit()
        assert row.id is not None
        return row.id


def due_reminder(user_id: int, *, text: str, recurrence: str | None = None) -> int:
    """A reminder created an hour ago that came due a minute ago (in the app's database)."""
    now = utcnow()
    with session_scope() as session:
        row = create_reminder(
            session=session,
            user_id=user_id,
            text=text,
            due_at=now - timedelta(minutes=1),
            recurrence=recurrence,
            now=now - timedelta(hours=1),
        )
        session.flush()
        assert row.id is not None
        return row.id


def zone_at(hour: int) -> str:
    """A fixed-offset zone where the local time is now between ``hour``:00 and the next hour."""
    offset = (hour - utcnow().hour) % 24
    offset = offset - 24 if offset > 14 else offset
    # POSIX-style names: Etc/GMT-3 is UTC+3.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def settle(broker: dramatiq.Broker) -> None:
    """Wait until the queues of the reminders domain (and their delay queues) are empty."""
    for queue in ("reminders", "email"):
        broker.join(queue, timeout=30_000)
