"""The queues, one per domain plus the urgent lane, so operators can give each its own workers.

docs/architecture.md ("Queues") lists each queue's actors and why ``urgent`` is a lane (a queue
of its own: quorum queues have no priorities on RabbitMQ 3.x). Each queue also has
``<name>.DQ`` (delayed and retried messages) and ``<name>.XQ`` (dead letters, kept 7 days).
"""

from __future__ import annotations

from typing import Final

REMINDERS: Final = "reminders"
EMAIL: Final = "email"
FILES: Final = "files"
SYNC: Final = "sync"
MAINTENANCE: Final = "maintenance"
URGENT: Final = "urgent"

ALL: Final = (URGENT, REMINDERS, EMAIL, FILES, SYNC, MAINTENANCE)
#: The lanes whose work is time-critical: small, short messages that must not wait for a
#: backlog; every other queue carries bulk work that may.
TIME_CRITICAL: Final = (URGENT, REMINDERS)

#: Dramatiq's in-process order for an urgent actor's messages (lower runs first): a worker that
#: consumes both lanes hands an urgent message to the next free thread, ahead of bulk messages
#: it already prefetched.
URGENT_PRIORITY: Final = -10
