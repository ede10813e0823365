"""Prometheus metrics of message processing, without the faults of dramatiq's own middleware
(docs/metrics.md lists the differences; each has a test). Metric objects are made at worker
boot on the current registry (a fresh one in tests), not at import, so an in-process
``Worker`` works without ``process_boot``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from dramatiq import Broker, Worker
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from bgworkers.metrics.messages import MESSAGE_METRICS, MessageMetricSet, bounded_labels
from bgworkers.metrics.multiproc import ENV_VAR


class _LabelledSeries(NamedTuple):
    """The series of one ``(queue, actor)`` written for every message, looked up once.

    prometheus_client's ``labels()`` takes a lock and builds a key on every call; with four
    series per message that was a quarter of this middleware's cost.
    """

    in_progress: Any
    duration: Any
    processed: Any


#: Set on the message proxy (one per delivery): when this attempt started, its labels and their
#: series (the same series counted down as was counted up). Not a dict keyed by message id: a
#: retry keeps its id and may start on another thread before this attempt's after-hooks ran.
STARTED_ATTR = "bgw_metrics_started"
_Started = tuple[float, tuple[str, str], _LabelledSeries]


class MessageMetrics(Middleware):
    """Counts every message by outcome and times its run, labelled by queue and actor only."""

    def __init__(self, initialise: Callable[[Mapping[str, Any]], None] | None = None) -> None:
        """``initialise``: called with the declared actors at worker boot, to build every
        metric set with its known label sets at 0 (bgworkers' stack passes
        :func:`bgworkers.stack.known_series.initialise_from_settings`)."""
        self._initialise = initialise
        # Per metric set (a test swaps the registry, and with it the set): series by labels.
        # The labels are bounded (queues x declared actors), so is this cache.
        self._series: tuple[MessageMetricSet | None, dict[tuple[str, str], _LabelledSeries]]
        self._series = (None, {})

    def _labelled(self, labels: tuple[str, str]) -> _LabelledSeries:
        metrics = MESSAGE_METRICS.get()
        # One read of the pair: a registry swapped by another thread meanwhile never gets
        # this set's series cached under it.
        built_for, series = self._series
        if built_for is not metrics:
            built_for, series = self._series = (metrics, {})
        found = series.get(labels)
        if found is None:
            found = series[labels] = _LabelledSeries(
                metrics.in_progress.labels(*labels),
                metrics.duration.labels(*labels),
                metrics.processed.labels(*labels),
            )
        return found

    def before_worker_boot(self, broker: Broker, worker: Worker) -> None:
        """Every metric set built and every known label set at 0, before the first message
        (once per process; see :mod:`bgworkers.stack.known_series`)."""
        if self._initialise is not None:
            self._initialise(broker.actors)

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        directory = os.environ.get(ENV_VAR)
        if directory:
            from prometheus_client import multiprocess

            # Drop this process's "live" gauge files so its in-progress count leaves the sum.
            multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        labels = bounded_labels(message.queue_name, message.actor_name, broker.actors)
        series = self._labelled(labels)
        setattr(message, STARTED_ATTR, (time.perf_counter(), labels, series))
        series.in_progress.inc()

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        started: _Started | None = message.__dict__.pop(STARTED_ATTR, None)
        if started is None:
            return
        start, labels, series = started
        series.in_progress.dec()
        series.duration.observe(time.perf_counter() - start)
        series.processed.inc()
        if exception is None and not message.failed:
            return  # succeeded: nothing more to count
        metrics = MESSAGE_METRICS.get()
        if exception is not None:
            metrics.failed.labels(*labels).inc()
        # As the retry policy decided (its after-hook ran first): given up, or to run again.
        counter = metrics.dead_lettered if message.failed else metrics.retried
        counter.labels(*labels).inc()

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        labels = bounded_labels(message.queue_name, message.actor_name, broker.actors)
        started: _Started | None = message.__dict__.pop(STARTED_ATTR, None)
        if started is not None:
            started[2].in_progress.dec()
        metrics = MESSAGE_METRICS.get()
        metrics.skipped.labels(*labels).inc()
        if message.failed:
            metrics.dead_lettered.labels(*labels).inc()
