"""Plain helpers shared by the outbox tests: an in-memory publisher, a settable clock, rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers.outbox import enqueue
from bgworkers.outbox.publishers import Outgoing, PublishError
from tests.outbox.probe import outbox_probe


class MemoryPublisher:
    """Keeps what it is given; refuses batches while ``down`` is set."""

    def __init__(self) -> None:
        self.batches: list[list[Outgoing]] = []
        self.down = False

    def publish(self, batch: Sequence[Outgoing]) -> None:
        if self.down:
            raise PublishError("broker down")
        self.batches.append(list(batch))

    def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def add(engine: Engine, count: int) -> None:
    with Session(engine) as session:
        for i in range(count):
            enqueue(session, outbox_probe, f"k{i}")
        session.commit()
