"""Metrics of the files domain: temp-file cleanup and per-user backups.

Labels are bounded: ``mode`` is ``delete`` or ``dry_run``, ``reason`` and ``outcome`` are
fixed words; never a path or a user id.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from bgworkers.metrics import LazyMetrics

#: Seconds; temp cleanup and a user's backup both take seconds to minutes.
_DURATION_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800)
#: Every value of each label, exported at 0 from start-up (:mod:`bgworkers.stack.known_series`).
MODES = ("delete", "dry_run")
TEMP_SKIP_REASONS = ("vanished", "changed", "special_file", "other_filesystem", "error")
BACKUP_OUTCOMES = ("written", "already_present", "user_missing")


@dataclass(frozen=True)
class CleanupMetrics:
    files_removed: Counter
    freed_bytes: Counter
    dirs_removed: Counter
    skipped: Counter
    duration: Histogram

    @classmethod
    def build(cls, registry: CollectorRegistry) -> CleanupMetrics:
        return cls(
            files_removed=Counter(
                "bgworkers_files_temp_files_removed_total",
                "Temporary files and symlinks removed (mode=dry_run: would have been).",
                ["mode"],
                registry=registry,
            ),
            freed_bytes=Counter(
                "bgworkers_files_temp_freed_bytes_total",
                "Apparent size in bytes of the temporary files removed.",
                ["mode"],
                registry=registry,
            ),
            dirs_removed=Counter(
                "bgworkers_files_temp_dirs_removed_total",
                "Empty subdirectories of the temp directory removed.",
                ["mode"],
                registry=registry,
            ),
            skipped=Counter(
                "bgworkers_files_temp_skipped_total",
                "Entries left in place: vanished, changed, not a regular file, or an OS error.",
                ["reason"],
                registry=registry,
            ),
            duration=Histogram(
                "bgworkers_files_temp_cleanup_duration_seconds",
                "Wall time of one temp-directory cleanup, in seconds.",
                buckets=_DURATION_BUCKETS,
                registry=registry,
            ),
        )

    def zero(self) -> None:
        """Every known label set at 0, so ``increase()`` sees the first event."""
        for mode in MODES:
            self.files_removed.labels(mode)
            self.freed_bytes.labels(mode)
            self.dirs_removed.labels(mode)
        for reason in TEMP_SKIP_REASONS:
            self.skipped.labels(reason)


@dataclass(frozen=True)
class BackupMetrics:
    backups: Counter
    archive_bytes: Counter
    pruned: Counter
    enqueued: Counter
    duration: Histogram

    @classmethod
    def build(cls, registry: CollectorRegistry) -> BackupMetrics:
        return cls(
            backups=Counter(
                "bgworkers_files_backups_total",
                "Per-user backup runs by outcome (written, already_present, user_missing).",
                ["outcome"],
                registry=registry,
            ),
            archive_bytes=Counter(
                "bgworkers_files_backup_written_bytes_total",
                "Bytes of backup archives written.",
                registry=registry,
            ),
            pruned=Counter(
                "bgworkers_files_backups_pruned_total",
                "Old backup archives deleted by retention.",
                registry=registry,
            ),
            enqueued=Counter(
                "bgworkers_files_backup_users_enqueued_total",
                "Per-user backup messages sent by the weekly fan-out.",
                registry=registry,
            ),
            duration=Histogram(
                "bgworkers_files_backup_duration_seconds",
                "Wall time of one user's backup, in seconds.",
                buckets=_DURATION_BUCKETS,
                registry=registry,
            ),
        )

    def zero(self) -> None:
        """Every known label set at 0, so ``increase()`` sees the first event."""
        for outcome in BACKUP_OUTCOMES:
            self.backups.labels(outcome)


CLEANUP_METRICS: LazyMetrics[CleanupMetrics] = LazyMetrics(CleanupMetrics.build)
BACKUP_METRICS: LazyMetrics[BackupMetrics] = LazyMetrics(BackupMetrics.build)
