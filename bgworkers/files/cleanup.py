"""Delete old files under the temp directory, and nothing else.

Why file descriptors: every directory below the root is opened relative to its parent's
descriptor with ``O_NOFOLLOW``, and every stat, unlink and rmdir names an entry relative to
the descriptor of the directory being cleaned. A symlink is therefore never followed: a link
to a file or directory outside is at most removed as a link (its target is untouched), and a
directory swapped for a symlink mid-run makes the open fail instead of walking elsewhere.

Why two stats: a candidate is stat'ed when found and again just before it is removed; if it
vanished, it is counted and forgotten; if its identity, size or modification time changed
(someone wrote to it), it is kept for a later run. Age is the modification time
(``st_mtime``), compared with ``now - max_age``.

Only regular files and symlinks are removed; sockets, FIFOs and devices are left alone, and so
are subdirectories on another filesystem (a mount point inside the temp directory). Empty
subdirectories whose own modification time was old when the run reached them are removed
(the root itself never). Directories are read as a stream, so memory does not grow with
the number of files.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bgworkers.errors import PermanentError
from bgworkers.files.metrics import CLEANUP_METRICS
from bgworkers.logs.loggers import get_logger

log = get_logger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Deeper trees are left alone (and counted as errors) rather than exhausting descriptors.
MAX_DEPTH = 64


class TempDirUnavailable(PermanentError):
    """The temp directory is missing, not a directory, or unreadable: retrying cannot fix it."""


@dataclass
class CleanupReport:
    """What one run did; counts of entries, sizes in bytes, duration in seconds."""

    root: Path
    dry_run: bool
    files_removed: int = 0
    freed_bytes: int = 0
    dirs_removed: int = 0
    vanished: int = 0
    changed: int = 0
    special_kept: int = 0
    other_filesystem: int = 0
    errors: int = 0
    duration_s: float = 0.0


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_mode, st.st_mtime_ns, st.st_size)


class _Cleaner:
    def __init__(
        self,
        report: CleanupReport,
        *,
        cutoff_ns: int,
        root_dev: int,
        before_remove: Callable[[Path], None] | None,
    ) -> None:
        self.report = report
        self.cutoff_ns = cutoff_ns
        self.root_dev = root_dev
        self.before_remove = before_remove

    def clean_dir(self, dir_fd: int, path: Path, depth: int) -> bool:
        """Clean one directory's entries; True if none is left (or would be, in a dry run)."""
        remaining = 0
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                if not self.clean_entry(entry.name, dir_fd, path / entry.name, depth):
                    remaining += 1
        return remaining == 0

    def clean_entry(self, name: str, dir_fd: int, path: Path, depth: int) -> bool:
        """Handle one entry; True if it is gone (removed, would be removed, or vanished)."""
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            self.report.vanished += 1
            return True
        except OSError as exc:
            return self._error(path, exc)
        if stat.S_ISDIR(st.st_mode):
            return self.clean_subdir(name, dir_fd, path, st, depth)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            self.report.special_kept += 1
            return False
        if st.st_mtime_ns >= self.cutoff_ns:
            return False
        return self.remove_file(name, dir_fd, path, st)

    def remove_file(self, name: str, dir_fd: int, path: Path, found: os.stat_result) -> bool:
        if self.before_remove is not None:
            self.before_remove(path)
        try:
            current = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            self.report.vanished += 1
            return True
        except OSError as exc:
            return self._error(path, exc)
        if _identity(current) != _identity(found):
            self.report.changed += 1
            return False
        if self.report.dry_run:
            log.info("temp_file_would_be_removed", path=str(path), size_bytes=current.st_size)
        else:
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                self.report.vanished += 1
                return True
            except OSError as exc:
                return self._error(path, exc)
        self.report.files_removed += 1
        if stat.S_ISREG(current.st_mode):
            self.report.freed_bytes += current.st_size
        return True

    def clean_subdir(
        self, name: str, dir_fd: int, path: Path, found: os.stat_result, depth: int
    ) -> bool:
        if found.st_dev != self.root_dev:
            self.report.other_filesystem += 1
            return False
        if depth + 1 > MAX_DEPTH:
            return self._error(path, OSError(f"deeper than {MAX_DEPTH} levels; not descended"))
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            self.report.vanished += 1
            return True
        except OSError as exc:  # ELOOP/ENOTDIR: swapped for a symlink or file; EACCES
            return self._error(path, exc)
        try:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (found.st_dev, found.st_ino):
                self.report.changed += 1
                return False
            empty = self.clean_dir(fd, path, depth + 1)
        except OSError as exc:
            return self._error(path, exc)
        finally:
            os.close(fd)
        if not empty or found.st_mtime_ns >= self.cutoff_ns:
            return False
        return self.remove_empty_dir(name, dir_fd, path)

    def remove_empty_dir(self, name: str, dir_fd: int, path: Path) -> bool:
        if self.before_remove is not None:
            self.before_remove(path)
        if self.report.dry_run:
            log.info("temp_dir_would_be_removed", path=str(path))
        else:
            try:
                os.rmdir(name, dir_fd=dir_fd)
            except FileNotFoundError:
                self.report.vanished += 1
                return True
            except OSError:  # ENOTEMPTY: something was written meanwhile; ENOTDIR: swapped
                self.report.changed += 1
                return False
        self.report.dirs_removed += 1
        return True

    def _error(self, path: Path, exc: OSError) -> bool:
        self.report.errors += 1
        log.warning("temp_cleanup_entry_failed", path=str(path), error=str(exc))
        return False


def _open_root(root: Path) -> int:
    """Open the root itself without following a symlink: a temp dir configured as a link
    would otherwise clean whatever tree the link points at."""
    try:
        fd = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        raise TempDirUnavailable(f"temp directory {root} does not exist") from None
    except OSError as exc:
        if os.path.islink(root):
            raise TempDirUnavailable(
                f"temp directory {root} is a symlink; configure the real directory"
            ) from None
        if isinstance(exc, NotADirectoryError):
            raise TempDirUnavailable(f"temp directory {root} is not a directory") from None
        raise TempDirUnavailable(f"temp directory {root} cannot be opened: {exc}") from None
    return fd


def clean_temp_dir(
    *,
    root: Path,
    max_age: timedelta,
    now: datetime,
    dry_run: bool = False,
    before_remove: Callable[[Path], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> CleanupReport:
    """Remove files and symlinks under ``root`` last modified before ``now - max_age``.

    ``before_remove`` is called with each candidate's path just before its final check and
    removal (tests use it to change or delete the file at that moment). ``clock`` gives
    seconds for the duration. Raises :class:`TempDirUnavailable` if ``root`` cannot be read.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    started = clock()
    cutoff_ns = ((now - max_age) - _EPOCH) // timedelta(microseconds=1) * 1000
    report = CleanupReport(root=root, dry_run=dry_run)
    root_fd = _open_root(root)
    try:
        cleaner = _Cleaner(
            report,
            cutoff_ns=cutoff_ns,
            root_dev=os.fstat(root_fd).st_dev,
            before_remove=before_remove,
        )
        try:
            cleaner.clean_dir(root_fd, root, 0)
        except PermissionError as exc:
            raise TempDirUnavailable(f"temp directory {root} cannot be read: {exc}") from None
    finally:
        os.close(root_fd)
    report.duration_s = clock() - started
    _record(report)
    return report


def _record(report: CleanupReport) -> None:
    metrics = CLEANUP_METRICS.get()
    mode = "dry_run" if report.dry_run else "delete"
    metrics.files_removed.labels(mode=mode).inc(report.files_removed)
    metrics.freed_bytes.labels(mode=mode).inc(report.freed_bytes)
    metrics.dirs_removed.labels(mode=mode).inc(report.dirs_removed)
    for reason, count in (
        ("vanished", report.vanished),
        ("changed", report.changed),
        ("special_file", report.special_kept),
        ("other_filesystem", report.other_filesystem),
        ("error", report.errors),
    ):
        metrics.skipped.labels(reason=reason).inc(count)
    metrics.duration.observe(report.duration_s)
    log.info(
        "temp_cleanup_finished",
        root=str(report.root),
        dry_run=report.dry_run,
        files_removed=report.files_removed,
        freed_bytes=report.freed_bytes,
        dirs_removed=report.dirs_removed,
        vanished=report.vanished,
        changed=report.changed,
        special_kept=report.special_kept,
        other_filesystem=report.other_filesystem,
        errors=report.errors,
        duration_s=round(report.duration_s, 3),
    )
