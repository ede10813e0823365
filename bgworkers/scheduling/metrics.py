"""Per-job metrics: of scheduled runs (the workers), and of the scheduler's sends.

The label ``periodic_job`` is a schedule-table name (bounded). It is not called ``job``:
Prometheus sets ``job`` to the scrape target's name and renames a clashing label.

Why the scheduler has its own, served on its ``/metrics`` (``BGW_SCHEDULER_METRICS_PORT``):
the worker group sees the scheduler only through the heartbeat it records, minutes late and
only when RabbitMQ and a maintenance worker are up too. The scheduler itself says what it
sent, per job, what it failed to send, and when its loop last woke and means to wake next: a
scheduler process that is up (``up == 1``) but stuck shows as a next wake-up in the past.
Recorded by its send loop (:mod:`bgworkers.scheduling.resilient_sending`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from bgworkers.metrics import LazyMetrics

#: Every value of each label, exported at 0 from start-up (:mod:`bgworkers.stack.known_series`).
RUN_OUTCOMES = ("succeeded", "retried", "dead_lettered")
SKIP_REASONS = ("duplicate", "overlap", "paused", "database_unavailable")


@dataclass(frozen=True)
class ScheduleMetrics:
    runs: Counter
    failures: Counter
    skipped: Counter
    missed: Counter
    caught_up: Counter
    last_success: Gauge
    last_duration: Gauge

    @classmethod
    def build(cls, registry: CollectorRegistry) -> ScheduleMetrics:
        counter = functools.partial(Counter, labelnames=["periodic_job"], registry=registry)
        return cls(
            runs=counter(
                "bgworkers_schedule_runs_total",
                "Attempts of scheduled ticks, by outcome (succeeded, retried, dead_lettered).",
                labelnames=["periodic_job", "outcome"],
            ),
            failures=counter(
                "bgworkers_schedule_failures_total",
                "Attempts of scheduled ticks that raised.",
            ),
            skipped=counter(
                "bgworkers_schedule_skipped_ticks_total",
                "Scheduled messages not run: duplicate (tick already claimed), overlap "
                "(the previous run was still going), paused (by an operator) or "
                "database_unavailable (the tick could not be claimed).",
                labelnames=["periodic_job", "reason"],
            ),
            missed=counter(
                "bgworkers_schedule_missed_ticks_total",
                "Ticks never sent (scheduler down) and older than the job's catch-up window.",
            ),
            caught_up=counter(
                "bgworkers_schedule_caught_up_ticks_total",
                "Missed ticks re-sent on recovery because they were inside the window.",
            ),
            last_success=Gauge(
                "bgworkers_schedule_last_success_timestamp_seconds",
                "Unix time at which the job's last successful run finished.",
                ["periodic_job"],
                registry=registry,
                multiprocess_mode="max",
            ),
            last_duration=Gauge(
                "bgworkers_schedule_last_duration_seconds",
                "Duration in seconds of the job's last finished attempt.",
                ["periodic_job"],
                registry=registry,
                multiprocess_mode="mostrecent",
            ),
        )

    def zero(self, jobs: Iterable[str]) -> None:
        """Every known label set of every periodic job at 0 (counters only: a timestamp gauge
        at 0 would read as "56 years ago")."""
        for job in jobs:
            for outcome in RUN_OUTCOMES:
                self.runs.labels(job, outcome)
            for reason in SKIP_REASONS:
                self.skipped.labels(job, reason)
            self.failures.labels(job)
            self.missed.labels(job)
            self.caught_up.labels(job)


SCHEDULE_METRICS: LazyMetrics[ScheduleMetrics] = LazyMetrics(ScheduleMetrics.build)


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
