"""The full bgworkers stack for ``stack_overhead.py``: a no-op declared through ``@task``.

Run as ``dramatiq bgworkers _stack_bgworkers --path bench``: ``import bgworkers`` builds the
broker with its whole middleware stack (``BGW_BROKER_URL`` is the benchmark's own vhost), and
this module adds one actor on the maintenance queue, arguments checked like every actor's.
"""

from __future__ import annotations

from _stack_noop import noop

from bgworkers import queues
from bgworkers.tasks import task


@task(queue=queues.MAINTENANCE)
def bench_noop(sent_at: float = 0.0) -> None:
    noop(sent_at)
