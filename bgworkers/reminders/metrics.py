"""Metrics of reminders and daily summaries (labels are small fixed sets)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from bgworkers.metrics import LazyMetrics

# Seconds between an occurrence's due time and its firing: a healthy system stays under 60.
DELAY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 900, 3600)
#: Every value of each label, exported at 0 from start-up (:mod:`bgworkers.stack.known_series`).
RECURRING = ("true", "false")
#: missing and not_due, raced (another run advanced it first), and every final status.
REMINDER_SKIP_REASONS = ("missing", "not_due", "raced", "fired", "cancelled", "failed")
SUMMARY_SKIP_REASONS = ("missing", "opted_out", "bad_address", "stale", "already_sent")


@dataclass(frozen=True)
class ReminderMetrics:
    dispatched: Counter
    fired: Counter
    skipped: Counter
    failed: Counter
    delay: Histogram
    summaries_dispatched: Counter
    summaries_sent: Counter
    summaries_skipped: Counter

    @classmethod
    def build(cls, registry: CollectorRegistry) -> ReminderMetrics:
        return cls(
            dispatched=Counter(
                "bgworkers_reminders_dispatched_total",
                "Due reminders handed out (in page messages) by the every-minute check.",
                registry=registry,
            ),
            fired=Counter(
                "bgworkers_reminders_fired_total",
                "Reminder occurrences fired (written to the outbox), by recurring yes/no.",
                ["recurring"],
                registry=registry,
            ),
            skipped=Counter(
                "bgworkers_reminders_skipped_total",
                "fire_reminder runs that did nothing, by reason (cancelled, not_due, ...).",
                ["reason"],
                registry=registry,
            ),
            failed=Counter(
                "bgworkers_reminders_failed_total",
                "Reminders that could not fire and were marked failed.",
                registry=registry,
            ),
            delay=Histogram(
                "bgworkers_reminders_firing_delay_seconds",
                "Seconds from an occurrence's due time to its firing.",
                registry=registry,
                buckets=DELAY_BUCKETS,
            ),
            summaries_dispatched=Counter(
                "bgworkers_summaries_dispatched_total",
                "Users handed out (in summary page messages) by the quarter-hourly run.",
                registry=registry,
            ),
            summaries_sent=Counter(
                "bgworkers_summaries_sent_total",
                "Daily summaries written to the outbox.",
                registry=registry,
            ),
            summaries_skipped=Counter(
                "bgworkers_summaries_skipped_total",
                "Per-user summary runs that did nothing, by reason (already_sent, ...).",
                ["reason"],
                registry=registry,
            ),
        )

    def zero(self) -> None:
        """Every known label set at 0, so ``increase()`` sees the first event."""
        for recurring in RECURRING:
            self.fired.labels(recurring)
        for reason in REMINDER_SKIP_REASONS:
            self.skipped.labels(reason)
        for reason in SUMMARY_SKIP_REASONS:
            self.summaries_skipped.labels(reason)


REMINDER_METRICS: LazyMetrics[ReminderMetrics] = LazyMetrics(ReminderMetrics.build)
