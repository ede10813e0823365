"""Benchmark: time and peak memory to clean 100,000 old temp files.

Builds a temp directory of ``--dirs`` subdirectories holding ``--files`` files in all (1 KiB
each, modification time two days ago), then runs the real cleanup on it twice, each time on
a fresh tree: once untraced for the wall time, once under ``tracemalloc`` for the peak of
Python allocations. Prints the figures; asserts nothing about speed.

    python bench/cleanup_temp_files.py [--files 100000] [--dirs 100]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _isolation import quiet_logs

from bgworkers.files.cleanup import CleanupReport, clean_temp_dir

NOW = datetime.now(UTC)
MAX_AGE = timedelta(hours=24)


def build_tree(root: Path, files: int, dirs: int) -> None:
    old = (NOW - timedelta(days=2)).timestamp()
    payload = b"x" * 1024
    per_dir = -(-files // dirs)
    made = 0
    for d in range(dirs):
        directory = root / f"d{d:04d}"
        directory.mkdir()
        for f in range(min(per_dir, files - made)):
            path = directory / f"f{f:06d}.tmp"
            path.write_bytes(payload)
            os.utime(path, (old, old))
            made += 1
        os.utime(directory, (old, old))


def run_once(files: int, dirs: int, *, traced: bool) -> tuple[CleanupReport, float, int]:
    base = Path(tempfile.mkdtemp(prefix="bgw-bench-"))
    try:
        root = base / "tmp"
        root.mkdir()
        build_tree(root, files, dirs)
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        report = clean_temp_dir(root=root, max_age=MAX_AGE, now=NOW)
        elapsed = time.perf_counter() - started
        peak = 0
        if traced:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert report.files_removed == files and not any(root.iterdir())
        return report, elapsed, peak
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--dirs", type=int, default=100)
    args = parser.parse_args()
    quiet_logs()

    report, elapsed, _ = run_once(args.files, args.dirs, traced=False)
    _, traced_elapsed, peak = run_once(args.files, args.dirs, traced=True)
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    print(f"files removed:          {report.files_removed:,} in {args.dirs} directories")
    print(f"directories removed:    {report.dirs_removed:,}")
    print(f"bytes freed:            {report.freed_bytes:,}")
    print(
        f"wall time:              {elapsed:.2f} s ({report.files_removed / elapsed:,.0f} files/s)"
    )
    print(f"wall time (traced):     {traced_elapsed:.2f} s")
    print(f"peak Python allocation: {peak / 1024:,.0f} KiB during the cleanup (tracemalloc)")
    print(f"process max RSS:        {max_rss_kib / 1024:,.1f} MiB (whole run, incl. set-up)")


if __name__ == "__main__":
    main()
