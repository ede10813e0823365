"""Metrics of the email outbox (labels are small fixed sets, never addresses or ids)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from bgworkers.metrics import LazyMetrics

# Seconds for one SMTP transaction, from a local relay to a slow remote server.
SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: Every value of each label, exported at 0 from start-up (:mod:`bgworkers.stack.known_series`).
FAILURE_REASONS = ("rejected", "attempts_exhausted")
ERROR_KINDS = ("transient", "permanent")


@dataclass(frozen=True)
class EmailMetrics:
    enqueued: Counter
    sent: Counter
    failed: Counter
    send_errors: Counter
    claims_skipped: Counter
    recovered: Counter
    dispatched: Counter
    send_duration: Histogram

    @classmethod
    def build(cls, registry: CollectorRegistry) -> EmailMetrics:
        return cls(
            enqueued=Counter(
                "bgworkers_email_enqueued_total",
                "Emails written to the outbox (a repeated idempotency key is not counted).",
                registry=registry,
            ),
            sent=Counter(
                "bgworkers_email_sent_total",
                "Emails the SMTP server accepted.",
                registry=registry,
            ),
            failed=Counter(
                "bgworkers_email_failed_total",
                "Emails given up: reason is rejected (5xx) or attempts_exhausted.",
                ["reason"],
                registry=registry,
            ),
            send_errors=Counter(
                "bgworkers_email_send_errors_total",
                "Failed SMTP attempts by kind (transient or permanent).",
                ["kind"],
                registry=registry,
            ),
            claims_skipped=Counter(
                "bgworkers_email_claims_skipped_total",
                "Emails a sender went to claim and left: already sent, failed or being sent "
                "(a send_email's own email, each such email of a page), or, for a page, tried "
                "before and waiting for its own retry.",
                registry=registry,
            ),
            recovered=Counter(
                "bgworkers_email_recovered_total",
                "Emails stuck in 'sending' past the timeout and put back in the queue.",
                registry=registry,
            ),
            dispatched=Counter(
                "bgworkers_email_dispatched_total",
                "Emails the outbox sweep handed on again (never tried: in send_email_page "
                "messages; tried before: a send_email message each).",
                registry=registry,
            ),
            send_duration=Histogram(
                "bgworkers_email_send_duration_seconds",
                "Time of one SMTP delivery attempt, in seconds.",
                registry=registry,
                buckets=SEND_BUCKETS,
            ),
        )

    def zero(self) -> None:
        """Every known label set at 0, so ``increase()`` sees the first event."""
        for reason in FAILURE_REASONS:
            self.failed.labels(reason)
        for kind in ERROR_KINDS:
            self.send_errors.labels(kind)


EMAIL_METRICS: LazyMetrics[EmailMetrics] = LazyMetrics(EmailMetrics.build)
