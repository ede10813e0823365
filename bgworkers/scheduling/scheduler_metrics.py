"""The scheduler's own metrics, served on its ``/metrics`` (``BGW_SCHEDULER_METRICS_PORT``).

Why: the worker group sees the scheduler only through the heartbeat it records, minutes late
and only when RabbitMQ and a maintenance worker are up too. The scheduler itself says what it
sent, per job, what it failed to send, and when its loop last woke and means to wake next: a
scheduler process that is up (``up == 1``) but stuck shows as a next wake-up in the past.

Recorded by the scheduler's send loop (:mod:`bgworkers.scheduling.resilient_sending`); every
job's counters exist at 0 from start-up (:meth:`SchedulerMetrics.zero`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from bgworkers.metrics import LazyMetrics


@dataclass(frozen=True)
class SchedulerMetrics:
    ticks_sent: Counter
    send_failures: Counter
    last_sent: Gauge
    wakeup: Gauge
    next_wakeup: Gauge

    @classmethod
    def build(cls, registry: CollectorRegistry) -> SchedulerMetrics:
        counter = functools.partial(Counter, labelnames=["periodic_job"], registry=registry)
        return cls(
            ticks_sent=counter(
                "bgworkers_scheduler_ticks_sent_total",
                "Ticks the scheduler sent to RabbitMQ, per periodic job.",
            ),
            send_failures=counter(
                "bgworkers_scheduler_send_failures_total",
                "Failed attempts to send a tick (RabbitMQ away); each is retried.",
            ),
            last_sent=Gauge(
                "bgworkers_scheduler_last_sent_timestamp_seconds",
                "Unix time of the tick the scheduler last sent, per periodic job.",
                ["periodic_job"],
                registry=registry,
            ),
            wakeup=Gauge(
                "bgworkers_scheduler_wakeup_timestamp_seconds",
                "Unix time the scheduler's loop last woke up to send due ticks.",
                registry=registry,
            ),
            next_wakeup=Gauge(
                "bgworkers_scheduler_next_wakeup_timestamp_seconds",
                "Unix time the scheduler's loop means to wake up next; in the past, it is stuck.",
                registry=registry,
            ),
        )

    def zero(self, jobs: Iterable[str]) -> None:
        """Every job's counters at 0, so ``increase()`` sees the first send and failure."""
        for job in jobs:
            self.ticks_sent.labels(job)
            self.send_failures.labels(job)


SCHEDULER_METRICS: LazyMetrics[SchedulerMetrics] = LazyMetrics(SchedulerMetrics.build)
