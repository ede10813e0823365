"""A test actor that counts deliveries and applies its effect once per key (idempotency).

Registered on bgworkers' broker when imported; consumed by in-process workers of the tests.
"""

from __future__ import annotations

import threading
from collections import Counter

from bgworkers import queues
from bgworkers.tasks import task

_lock = threading.Lock()
#: How often each key was delivered (RabbitMQ delivers at least once).
DELIVERIES: Counter[str] = Counter()
#: How often each key's effect was applied: at most once, thanks to the check below.
EFFECTS: Counter[str] = Counter()
#: The keys in the order their messages were processed.
ORDER: list[str] = []


def reset() -> None:
    with _lock:
        DELIVERIES.clear()
        EFFECTS.clear()
        ORDER.clear()


@task(queue=queues.MAINTENANCE, max_retries=0)
def outbox_probe(key: str, size: int = 0) -> None:
    """Record the delivery; apply the effect only if this key has none yet."""
    with _lock:
        DELIVERIES[key] += 1
        ORDER.append(key)
        if EFFECTS[key] == 0:
            EFFECTS[key] += 1
