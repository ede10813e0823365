"""Prometheus metrics of the sync domain; labels are bounded (provider, outcome, action)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from bgworkers.metrics import LazyMetrics

#: Every value of each label, per provider, exported at 0 from start-up
#: (see :mod:`bgworkers.stack.known_series`): only the pairs the code can produce.
PROVIDERS = ("google_calendar", "notion")
RUN_OUTCOMES = (
    "completed",
    "yielded",
    "paused",
    "superseded",
    "skipped",
    "transient_error",
    "permanent_error",
    "error",
)
ITEM_ACTIONS = {
    "google_calendar": ("upserted", "removed", "malformed"),
    "notion": ("upserted", "archived", "malformed"),
}
FULL_RESYNC_REASONS = {
    "google_calendar": ("initial", "gone", "stale_page_token"),
    "notion": ("stale_cursor",),
}
TOKEN_REFRESH_OUTCOMES = {"google_calendar": ("refreshed", "failed"), "notion": ()}
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "transport_error")
HTTP_RETRY_KINDS = ("inline",)
#: What becomes of a paused run's chain of re-sends (:mod:`bgworkers.sync.pause_chain`).
PAUSE_CHAIN_EVENTS = ("tick_skipped", "given_up", "failed", "reclaimed")
#: Providers whose requests wait for the client-side rate limiter.
RATE_LIMITED = ("notion", "google_calendar")


@dataclass(frozen=True)
class SyncMetrics:
    runs: Counter
    items: Counter
    pages: Counter
    full_resyncs: Counter
    token_refreshes: Counter
    http_requests: Counter
    http_retries: Counter
    rate_limit_wait: Counter
    users_enqueued: Counter
    pause_chains: Counter
    duration: Histogram

    @classmethod
    def build(cls, registry: CollectorRegistry) -> SyncMetrics:
        return cls(
            runs=Counter(
                "bgworkers_sync_runs_total",
                "Per-user sync runs by provider and outcome (completed, yielded, paused, "
                "superseded, skipped, transient_error, permanent_error, error).",
                ["provider", "outcome"],
                registry=registry,
            ),
            items=Counter(
                "bgworkers_sync_items_total",
                "Synced items by provider and action (upserted, removed, archived, malformed).",
                ["provider", "action"],
                registry=registry,
            ),
            pages=Counter(
                "bgworkers_sync_pages_total",
                "Result pages fetched and committed.",
                ["provider"],
                registry=registry,
            ),
            full_resyncs=Counter(
                "bgworkers_sync_full_resyncs_total",
                "Full listings started, by reason (initial, gone, stale_cursor).",
                ["provider", "reason"],
                registry=registry,
            ),
            token_refreshes=Counter(
                "bgworkers_sync_token_refreshes_total",
                "OAuth access-token refreshes by outcome (refreshed, failed).",
                ["provider", "outcome"],
                registry=registry,
            ),
            http_requests=Counter(
                "bgworkers_sync_http_requests_total",
                "HTTP attempts by provider and status class (2xx, 4xx, 5xx, transport_error).",
                ["provider", "status_class"],
                registry=registry,
            ),
            http_retries=Counter(
                "bgworkers_sync_http_retries_total",
                "HTTP attempts retried inside the message.",
                ["provider", "kind"],
                registry=registry,
            ),
            rate_limit_wait=Counter(
                "bgworkers_sync_rate_limit_wait_seconds_total",
                "Seconds spent waiting for the shared provider rate limits.",
                ["provider"],
                registry=registry,
            ),
            users_enqueued=Counter(
                "bgworkers_sync_users_enqueued_total",
                "Per-user sync messages sent by the periodic fan-out.",
                ["provider"],
                registry=registry,
            ),
            pause_chains=Counter(
                "bgworkers_sync_pause_chains_total",
                "Paused connections by event: a fan-out left one to its pending re-send "
                "(tick_skipped), a storm outlasted BGW_SYNC_MAX_PAUSE_S (given_up), a paused "
                "connection whose re-send never came back was synced again (reclaimed).",
                ["provider", "event"],
                registry=registry,
            ),
            duration=Histogram(
                "bgworkers_sync_duration_seconds",
                "Duration of one per-user sync run, in seconds.",
                ["provider"],
                buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900),  # time limit: 10 min
                registry=registry,
            ),
        )

    def zero(self) -> None:
        """Every known label set at 0, so ``increase()`` sees the first event."""
        for provider in PROVIDERS:
            for outcome in RUN_OUTCOMES:
                self.runs.labels(provider, outcome)
            for action in ITEM_ACTIONS[provider]:
                self.items.labels(provider, action)
            for reason in FULL_RESYNC_REASONS[provider]:
                self.full_resyncs.labels(provider, reason)
            for outcome in TOKEN_REFRESH_OUTCOMES[provider]:
                self.token_refreshes.labels(provider, outcome)
            for status_class in STATUS_CLASSES:
                self.http_requests.labels(provider, status_class)
            for kind in HTTP_RETRY_KINDS:
                self.http_retries.labels(provider, kind)
            self.pages.labels(provider)
            self.users_enqueued.labels(provider)
            for event in PAUSE_CHAIN_EVENTS:
                self.pause_chains.labels(provider, event)
            self.duration.labels(provider)
        for provider in RATE_LIMITED:
            self.rate_limit_wait.labels(provider)


SYNC_METRICS: LazyMetrics[SyncMetrics] = LazyMetrics(SyncMetrics.build)


@contextmanager
def observe_run(provider: str, user_id: int) -> Iterator[dict[str, Any]]:
    """Count, time and log one per-user run: one ``sync_run_finished`` line per run.

    The caller fills the yielded dict with the run's figures and ``outcome``; an exception
    sets the outcome to ``transient_error`` or ``permanent_error`` (our classified errors) or
    ``error`` (anything else: a bug, a time limit, a shutdown) and is re-raised.
    """
    from bgworkers.errors import PermanentError, TransientError
    from bgworkers.logs.loggers import get_logger

    figures: dict[str, Any] = {"outcome": "completed"}
    started = time.perf_counter()
    try:
        yield figures
    # BaseException: a time limit or shutdown must still be counted and logged, then re-raised.
    except BaseException as exc:
        if isinstance(exc, PermanentError):
            figures["outcome"] = "permanent_error"
        elif isinstance(exc, TransientError):
            figures["outcome"] = "transient_error"
        else:
            figures["outcome"] = "error"
        figures["error_type"] = type(exc).__name__
        figures["error"] = str(exc)[:300]
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics = SYNC_METRICS.get()
        metrics.runs.labels(provider, figures["outcome"]).inc()
        metrics.duration.labels(provider).observe(elapsed)
        level = (
            "info"
            if figures["outcome"] in ("completed", "yielded", "paused", "skipped", "superseded")
            else "warning"
        )
        getattr(get_logger(__name__), level)(
            "sync_run_finished",
            provider=provider,
            user_id=user_id,
            duration_s=round(elapsed, 6),
            **figures,
        )
