"""Fixtures of the reminders tests: users in the migrated database."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import dramatiq
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

import bgworkers
from bgworkers.email.smtp import use_mailer
from bgworkers.users.models import User
from tests.reminders.helpers import RecordingMailer


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


@pytest.fixture
def mailer() -> Iterator[RecordingMailer]:
    recording = RecordingMailer()
    use_mailer(recording)
    yield recording
    use_mailer(None)
