"""Where metrics live: a swappable registry and lazily built metric sets.

Why lazy: a metric object is bound to a registry when it is created. Building metric sets on
first use (not at import) lets a test install a fresh ``CollectorRegistry`` with
:func:`use_registry`, and lets a worker choose multiprocess mode before any value exists.

This package's ``__init__`` must not import prometheus_client (see
:mod:`bgworkers.metrics.multiproc`). Each domain wraps its metric set in :class:`LazyMetrics`;
code calls ``MY_METRICS.get().something.inc()``.

Modules: ``messages`` (the message metrics), ``multiproc`` (a worker group's value files),
``reading`` (a value refreshed by a background thread, so a scrape never waits),
``recorded_gauges`` and ``models`` (gauges measured by one worker and kept in the database),
``server`` (the HTTP endpoints). Every series at 0 from start-up:
:mod:`bgworkers.stack.known_series`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

if TYPE_CHECKING:  # importing prometheus_client here would fix its mode too early
    from prometheus_client import CollectorRegistry

T = TypeVar("T")

_lock = threading.Lock()
_registry: CollectorRegistry | None = None


def current_registry() -> CollectorRegistry:
    """The registry metric sets are built on: prometheus_client's global one by default."""
    return _registry if _registry is not None else _default_registry()


@functools.cache
def _default_registry() -> CollectorRegistry:
    # Imported on first use, then remembered: asked for twice per message.
    from prometheus_client import REGISTRY

    return REGISTRY


def use_registry(registry: CollectorRegistry) -> None:
    """Make every metric set build on ``registry`` from now on (tests: one per test)."""
    global _registry
    with _lock:
        _registry = registry


class LazyMetrics(Generic[T]):
    """A metric set built on the current registry at first use, rebuilt when it changes."""

    #: Every metric set declared, so docs and exposition checks can build them all.
    declared: ClassVar[list[LazyMetrics[Any]]] = []

    def __init__(self, factory: Callable[[CollectorRegistry], T]) -> None:
        self._factory = factory
        self._built: tuple[CollectorRegistry, T] | None = None
        LazyMetrics.declared.append(self)

    def build(self, registry: CollectorRegistry) -> T:
        """A fresh instance on ``registry`` (docs and exposition checks)."""
        return self._factory(registry)

    def get(self) -> T:
        built = self._built
        registry = current_registry()
        if built is not None and built[0] is registry:
            return built[1]
        with _lock:
            if self._built is None or self._built[0] is not registry:
                self._built = (registry, self._factory(registry))
            return self._built[1]
