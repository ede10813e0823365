"""Test-only actors that give the monitoring test real failures and retries to observe.

Loaded into real worker processes with ``dramatiq bgworkers tests.monitoring.workload``.
"""

from __future__ import annotations

from dramatiq.middleware import CurrentMessage

from bgworkers import queues
from bgworkers.tasks import task


@task(queue=queues.MAINTENANCE, max_retries=3, min_backoff_ms=100, max_backoff_ms=200)
def monitoring_flaky(key: str) -> None:
    """Fails its first attempt, succeeds on the retry."""
    message = CurrentMessage.get_current_message()
    if message is not None and message.options.get("retries", 0) == 0:
        raise RuntimeError(f"first attempt of {key} fails on purpose")
