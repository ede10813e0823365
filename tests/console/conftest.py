"""Fixtures of the console tests: the fake inbox reset and the CLI run in this process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.console import fake_jobs


@pytest.fixture(autouse=True)
def inbox() -> Iterator[fake_jobs.FakeInbox]:
    fake_jobs.INBOX.broken = True
    fake_jobs.INBOX.delivered.clear()
    fake_jobs.INBOX.flaky_failures = 0
    yield fake_jobs.INBOX
