"""Fixtures of the outbox tests: the probe actor, and the in-process relay switched off."""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest

from bgworkers.outbox.middleware import OutboxRelay
from tests.outbox import probe


@pytest.fixture(autouse=True)
def fresh_probe() -> Iterator[None]:
    probe.reset()
    yield
    probe.reset()


@pytest.fixture
def no_worker_relay(app_broker: dramatiq.Broker) -> Iterator[None]:
    """Workers started in this test run no relay thread: the test runs its own relays."""
    [middleware] = [m for m in app_broker.middleware if isinstance(m, OutboxRelay)]
    middleware.enabled = False
    yield
    middleware.enabled = True
