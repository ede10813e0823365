"""The queues, one per domain plus the urgent lane, so operators can give each its own workers.

``dramatiq bgworkers -Q email`` runs only email work; a slow calendar sync or backup never
delays a reminder. ``urgent`` is a lane rather than a domain: time-critical work (a reminder's
email, an email the application marks ``urgent=True``) goes there, so a bulk backlog on
``email`` (a notice to every user, the catch-up after an SMTP outage) never sits in front of
it. Quorum queues have no priorities on RabbitMQ 3.x, so a lane is a queue of its own.
Each queue also has ``<name>.DQ`` (delayed and retried messages) and ``<name>.XQ`` (dead
letters), which RabbitMQ holds for 7 days.
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
