"""A test actor with a fake dependency that fails until the test "fixes" it.

``deliver_note`` hands a note to :data:`INBOX`; while the inbox is broken it raises a
permanent error, so the message is dead-lettered at once (no retry delays to wait for).
Imported by the test process, whose in-process worker runs it on bgworkers' own broker.
"""

from __future__ import annotations

import threading

from bgworkers import queues
from bgworkers.errors import PermanentError, TransientError
from bgworkers.tasks import task


class FakeInbox:
    """The dependency: refuses every note while ``broken``; records the delivered ones."""

    def __init__(self) -> None:
        self.broken = True
        self.delivered: list[int] = []
        self.flaky_failures = 0  # how many of flaky_note's attempts fail
        self._lock = threading.Lock()

    def deliver(self, note_id: int) -> None:
        if self.broken:
            raise PermanentError(f"inbox refused note {note_id}: mailbox locked")
        with self._lock:
            self.delivered.append(note_id)


INBOX = FakeInbox()


@task(queue=queues.MAINTENANCE, max_retries=0)
def deliver_note(note_id: int, text: str = "", password: str = "") -> None:
    """A note for the inbox; ``password`` only shows that secrets are redacted in the index."""
    INBOX.deliver(note_id)


@task(queue=queues.MAINTENANCE, max_retries=2, min_backoff_ms=10, max_backoff_ms=50)
def flaky_note(note_id: int) -> None:
    """Fails transiently :attr:`FakeInbox.flaky_failures` times, then delivers."""
    if INBOX.flaky_failures > 0:
        INBOX.flaky_failures -= 1
        raise TransientError(f"inbox busy for note {note_id}")
    INBOX.deliver(note_id)
