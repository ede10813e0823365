"""The thread pool a worker process runs its sync pages' requests on.

Why a pool: a page's requests spend their time waiting on the provider (30 ms or more each),
so they are sent together; a pool per process (not per page) bounds how many are in flight
at once (``BGW_SYNC_PAGE_CONCURRENCY``) however many pages run, and is made once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bgworkers.processes.process_resources import ProcessResource
from bgworkers.settings import Settings

_POOL: ProcessResource[ThreadPoolExecutor] = ProcessResource(
    "sync_page_requests", close=lambda pool: pool.shutdown(wait=False, cancel_futures=True)
)


def run_all(settings: Settings, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterable[Any]:
    """``fn`` over ``items`` on this process's pool; results in the order of ``items``."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    pool = _POOL.get(
        lambda: ThreadPoolExecutor(settings.sync_page_concurrency, thread_name_prefix="sync-page")
    )
    return list(pool.map(fn, items))
