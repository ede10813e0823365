"""Prometheus metrics of message processing, without the faults of dramatiq's own middleware.

Differences that matter (each has a test):

* a retried message is counted once per attempt under its canonical queue: a message waiting
  in ``<queue>.DQ`` is neither processed nor counted until it runs;
* the in-progress gauge only goes down for messages it counted up, so a message skipped by
  an earlier middleware can never drive it negative;
* metric objects are made at worker boot on the current registry (a fresh one in tests),
  not at import, so an in-process ``Worker`` works without ``process_boot``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dramatiq import Broker, Worker
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from bgworkers.metrics.messages import MESSAGE_METRICS, MessageMetricSet, bounded_labels
from bgworkers.metrics.multiproc import ENV_VAR
from bgworkers.middleware.outcome import outcome_of

#: Set on the message proxy (one per delivery): when this attempt started and its labels.
#: Not a dict keyed by message id: a retry keeps its id and may start on another thread
#: before this attempt's after-hooks have run.
STARTED_ATTR = "bgw_metrics_started"


@dataclass(frozen=True)
class _LabelledSeries:
    """The series of one ``(queue, actor)`` written for every message, looked up once.

    prometheus_client's ``labels()`` takes a lock and builds a key on every call; with four
    series per message that was a quarter of this middleware's cost.
    """

    in_progress: Any
    duration: Any
    processed: Any

    @classmethod
    def of(cls, metrics: MessageMetricSet, labels: tuple[str, str]) -> _LabelledSeries:
        return cls(
            in_progress=metrics.in_progress.labels(*labels),
            duration=metrics.duration.labels(*labels),
            processed=metrics.processed.labels(*labels),
        )


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

    @property
    def _metrics(self) -> MessageMetricSet:
        return MESSAGE_METRICS.get()

    def _labelled(self, labels: tuple[str, str]) -> _LabelledSeries:
        metrics = self._metrics
        built_for, series = self._series
        if built_for is not metrics:
            built_for, series = self._series = (metrics, {})
        found = series.get(labels)
        if found is None:
            found = series[labels] = _LabelledSeries.of(metrics, labels)
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
        started = _pop_started(message)
        if started is None:
            return
        start, labels, series = started
        series.in_progress.dec()
        series.duration.observe(time.perf_counter() - start)
        series.processed.inc()
        if exception is None and not message.failed:
            return  # succeeded: nothing more to count
        metrics = self._metrics
        outcome = outcome_of(message, exception)
        if exception is not None:
            metrics.failed.labels(*labels).inc()
        if outcome == "retried":
            metrics.retried.labels(*labels).inc()
        elif outcome == "dead_lettered":
            metrics.dead_lettered.labels(*labels).inc()

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        labels = bounded_labels(message.queue_name, message.actor_name, broker.actors)
        started = _pop_started(message)
        if started is not None:
            started[2].in_progress.dec()
        self._metrics.skipped.labels(*labels).inc()
        if message.failed:
            self._metrics.dead_lettered.labels(*labels).inc()


def _pop_started(message: MessageProxy) -> _Started | None:
    started: _Started | None = message.__dict__.pop(STARTED_ATTR, None)
    return started


#: What ``before_process_message`` leaves on the proxy: start time, labels and their series
#: (looked up once per message, and the same series counted down as was counted up).
_Started = tuple[float, tuple[str, str], _LabelledSeries]
