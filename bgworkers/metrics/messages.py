"""Metrics of message processing, recorded by :class:`bgworkers.middleware.metrics.MessageMetrics`.

Labels are the queue and actor only (docs/metrics.md): :func:`bounded_labels` turns any other
name into ``unknown``, so a hostile envelope cannot make a label, and ``queue`` is always the
canonical name (``email``, never ``email.DQ``), so a retried message is counted once.
"""

from __future__ import annotations

import functools
from collections.abc import Container, Iterable
from dataclasses import dataclass

from dramatiq.common import q_name
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bgworkers import queues
from bgworkers.metrics import LazyMetrics

LABELS = ("queue", "actor")
#: The label of a queue or actor name that is not ours.
UNKNOWN = "unknown"


def bounded_labels(
    queue_name: object, actor_name: object, actors: Container[str]
) -> tuple[str, str]:
    """``(queue, actor)`` labels: canonical queue name and actor, or ``unknown``."""
    queue = q_name(queue_name) if isinstance(queue_name, str) else UNKNOWN
    return (
        queue if queue in queues.ALL else UNKNOWN,
        actor_name if isinstance(actor_name, str) and actor_name in actors else UNKNOWN,
    )


# Seconds; from a quick heartbeat to the longest time limit (optimize_database: 25 min), so no
# run that can finish lands in +Inf only (a test checks against every actor's time limit).
_SHORT_RUNS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
DURATION_BUCKETS: tuple[float, ...] = (*_SHORT_RUNS, 600, 900, 1200, 1800)


@dataclass(frozen=True)
class MessageMetricSet:
    processed: Counter
    failed: Counter
    retried: Counter
    dead_lettered: Counter
    skipped: Counter
    invalid: Counter
    redelivered: Counter
    in_progress: Gauge
    duration: Histogram

    @classmethod
    def build(cls, registry: CollectorRegistry) -> MessageMetricSet:
        counter = functools.partial(Counter, labelnames=LABELS, registry=registry)
        return cls(
            processed=counter(
                "bgworkers_messages_processed_total",
                "Message runs that finished, successfully or not.",
            ),
            failed=counter(
                "bgworkers_messages_failed_total",
                "Message runs that raised an error (each attempt counts).",
            ),
            retried=counter(
                "bgworkers_messages_retried_total",
                "Failed runs that were scheduled for another attempt.",
            ),
            dead_lettered=counter(
                "bgworkers_messages_dead_lettered_total",
                "Messages given up and moved to the dead-letter queue (<queue>.XQ).",
            ),
            skipped=counter(
                "bgworkers_messages_skipped_total",
                "Messages a middleware skipped without running the actor.",
            ),
            invalid=counter(
                "bgworkers_messages_invalid_total",
                "Deliveries refused before dispatch (not a valid message), by reason; each is "
                "also counted in bgworkers_messages_dead_lettered_total.",
                labelnames=("queue", "reason"),
            ),
            redelivered=counter(
                "bgworkers_messages_redelivered_total",
                "Deliveries RabbitMQ flagged as redelivered: handed out before and not acked "
                "(a worker died or lost its connection mid-run), by queue.",
                labelnames=("queue",),
            ),
            in_progress=Gauge(
                "bgworkers_messages_in_progress",
                "Messages being processed right now.",
                LABELS,
                registry=registry,
                multiprocess_mode="livesum",
            ),
            duration=Histogram(
                "bgworkers_message_duration_seconds",
                "Time an actor ran for one message, in seconds.",
                LABELS,
                registry=registry,
                buckets=DURATION_BUCKETS,
            ),
        )

    def zero(self, actors: Iterable[tuple[str, str]], refusal_reasons: Iterable[str]) -> None:
        """Every ``(queue, actor)`` pair at 0, and what a refused delivery can count.

        ``actors`` are the declared actors' pairs; each queue also gets ``actor="unknown"``
        for dead letters and skips (deliveries that name no declared actor), and every
        refusal reason of the envelope check (``InvalidEnvelope.CODES``, handed in so that
        the metrics need no broker code).
        """
        refusal_reasons = tuple(refusal_reasons)
        counters = (self.processed, self.failed, self.retried, self.dead_lettered, self.skipped)
        for labels in actors:
            for metric in (*counters, self.in_progress, self.duration):
                metric.labels(*labels)
        for queue in queues.ALL:
            self.dead_lettered.labels(queue, UNKNOWN)
            self.skipped.labels(queue, UNKNOWN)
            self.redelivered.labels(queue)
            for reason in refusal_reasons:
                self.invalid.labels(queue, reason)


MESSAGE_METRICS: LazyMetrics[MessageMetricSet] = LazyMetrics(MessageMetricSet.build)
