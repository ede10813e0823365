"""The queues, one per domain, so operators can give each its own workers.

``dramatiq bgworkers -Q email`` runs only email work; a slow calendar sync or backup never
delays a reminder. Each queue also has ``<name>.DQ`` (delayed and retried messages) and
``<name>.XQ`` (dead letters), which RabbitMQ holds for 7 days.
"""

from __future__ import annotations

from typing import Final

REMINDERS: Final = "reminders"
EMAIL: Final = "email"
FILES: Final = "files"
SYNC: Final = "sync"
MAINTENANCE: Final = "maintenance"

ALL: Final = (REMINDERS, EMAIL, FILES, SYNC, MAINTENANCE)
