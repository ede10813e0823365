"""Fixtures of the reminders tests: users in the migrated database."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage

import dramatiq
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

import bgworkers
from bgworkers.email.smtp import use_mailer
from bgworkers.reminders.api import create_reminder
from bgworkers.users.models import User


@pytest.fixture
def make_user(db_engine: Engine) -> Callable[..., int]:
    counter = iter(range(1, 10_000))

    def make(timezone: str = "Europe/Paris", **fields: object) -> int:
        with Session(db_engine) as session:
            values: dict[str, object] = {
                "email": f"user{next(counter)}@example.org",
                "display_name": "Ada",
                "timezone": timezone,
                **fields,
            }
            user = User(**values)  # type: ignore[arg-type]
            session.add(user)
            session.commit()
            assert user.id is not None
            return user.id

    return make


@pytest.fixture
def fresh_broker_connection() -> None:
    """Drop this thread's RabbitMQ connection before ``app_broker`` purges the queues.

    ``app_broker`` closes the broker after each test but keeps the closed connection as
    this thread's, so the next test's purge would fail on it.
    """
    del bgworkers.broker.connection


@pytest.fixture
def rabbit_worker(fresh_broker_connection: None, app_worker: dramatiq.Worker) -> dramatiq.Worker:
    """``app_worker`` (real RabbitMQ, every queue), usable in several tests in a row."""
    return app_worker


class RecordingMailer:
    """A mailer that keeps what it is given (the SMTP path is tested in tests/email)."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self._lock = threading.Lock()

    def send(self, message: EmailMessage) -> None:
        with self._lock:
            self.sent.append(message)

    def close(self) -> None:
        return None


@pytest.fixture
def mailer() -> Iterator[RecordingMailer]:
    recording = RecordingMailer()
    use_mailer(recording)
    yield recording
    use_mailer(None)


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
