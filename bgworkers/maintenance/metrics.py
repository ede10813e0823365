"""Metrics of the database maintenance jobs (``optimize_database``, ``cleanup_old_sessions``).

Labels are bounded: ``backend`` is the SQL dialect name. The database size
(``bgworkers_maintenance_database_size_bytes``) is kept in the database, not here: see
:mod:`bgworkers.metrics.recorded_gauges`.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from bgworkers.metrics import LazyMetrics


@dataclass(frozen=True)
class MaintenanceMetrics:
    optimize_runs: Counter
    optimize_duration: Histogram
    sessions_deleted: Counter
    session_batches: Counter

    @classmethod
    def build(cls, registry: CollectorRegistry) -> MaintenanceMetrics:
        return cls(
            optimize_runs=Counter(
                "bgworkers_maintenance_optimize_runs_total",
                "optimize_database runs; vacuumed says whether VACUUM ran (SQLite decides).",
                ["backend", "vacuumed"],
                registry=registry,
            ),
            optimize_duration=Histogram(
                "bgworkers_maintenance_optimize_duration_seconds",
                "Wall time of one optimize_database run, in seconds.",
                ["backend"],
                buckets=(0.1, 1, 5, 15, 60, 300, 900, 1800),
                registry=registry,
            ),
            sessions_deleted=Counter(
                "bgworkers_maintenance_sessions_deleted_total",
                "Expired user sessions deleted.",
                registry=registry,
            ),
            session_batches=Counter(
                "bgworkers_maintenance_session_cleanup_batches_total",
                "Delete transactions run by cleanup_old_sessions.",
                registry=registry,
            ),
        )

    def zero(self, backend: str) -> None:
        """Every known label set of the configured database ``backend`` at 0."""
        for vacuumed in ("true", "false"):
            self.optimize_runs.labels(backend, vacuumed)
        self.optimize_duration.labels(backend)


MAINTENANCE_METRICS: LazyMetrics[MaintenanceMetrics] = LazyMetrics(MaintenanceMetrics.build)
