"""Temp-file cleanup on real directories: ages, nesting, symlinks, races, dry run, bad roots."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bgworkers.files.cleanup import MAX_DEPTH, TempDirUnavailable, clean_temp_dir

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
MAX_AGE = timedelta(hours=24)
OLD = (NOW - timedelta(days=3)).timestamp()
FRESH = (NOW - timedelta(hours=1)).timestamp()


def make_file(path: Path, content: bytes, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, (mtime, mtime))
    return path


def age_dir(path: Path, mtime: float) -> None:
    os.utime(path, (mtime, mtime))


def make_link(path: Path, target: Path, mtime: float) -> Path:
    path.symlink_to(target)
    os.utime(path, (mtime, mtime), follow_symlinks=False)
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the temp root whose contents must survive every run."""
    directory = tmp_path / "outside"
    make_file(directory / "precious.txt", b"keep me", OLD)
    make_file(directory / "sub" / "also.txt", b"keep", OLD)
    age_dir(directory / "sub", OLD)
    age_dir(directory, OLD)
    return directory


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "tmp"
    directory.mkdir()
    return directory


def run(root: Path, **kwargs) -> object:  # type: ignore[no-untyped-def]
    return clean_temp_dir(root=root, max_age=MAX_AGE, now=NOW, **kwargs)


def test_removes_old_files_keeps_new_ones_and_reports(root: Path, registry) -> None:
    make_file(root / "old1.bin", b"x" * 100, OLD)
    make_file(root / "old2.bin", b"y" * 23, OLD)
    make_file(root / "new.bin", b"z" * 7, FRESH)
    # Exactly at the cutoff is not older than the age: kept.
    make_file(root / "edge.bin", b"e", (NOW - MAX_AGE).timestamp())

    report = run(root)

    assert sorted(p.name for p in root.iterdir()) == ["edge.bin", "new.bin"]
    assert report.files_removed == 2
    assert report.freed_bytes == 123
    assert report.errors == 0
    assert (
        registry.get_sample_value("bgworkers_files_temp_files_removed_total", {"mode": "delete"})
        == 2
    )
    assert (
        registry.get_sample_value("bgworkers_files_temp_freed_bytes_total", {"mode": "delete"})
        == 123
    )
    assert registry.get_sample_value("bgworkers_files_temp_cleanup_duration_seconds_count") == 1


def test_nested_directories_and_empty_subdirectories(root: Path) -> None:
    make_file(root / "a" / "b" / "c" / "old.log", b"1234", OLD)
    make_file(root / "a" / "keep" / "new.log", b"n", FRESH)
    (root / "a" / "empty_old").mkdir(parents=True)
    (root / "a" / "empty_new").mkdir()
    for d in ("a/b/c", "a/b", "a/keep", "a/empty_old", "a"):
        age_dir(root / d, OLD)
    age_dir(root / "a" / "empty_new", FRESH)

    report = run(root)

    assert not (root / "a" / "b").exists()  # emptied, and old: removed with its child
    assert not (root / "a" / "empty_old").exists()
    assert (root / "a" / "empty_new").is_dir()  # just created by someone: kept
    assert (root / "a" / "keep" / "new.log").is_file()
    assert report.files_removed == 1
    assert report.dirs_removed == 3  # a/b/c, a/b, a/empty_old
    assert root.is_dir()  # the root itself is never removed


def test_symlinks_are_removed_as_links_never_followed(root: Path, outside: Path) -> None:
    precious = outside / "precious.txt"
    make_link(root / "old_link_to_file", precious, OLD)
    make_link(root / "old_link_to_dir", outside, OLD)
    make_link(root / "new_link_to_dir", outside, FRESH)
    make_link(root / "dangling", root / "missing", OLD)
    make_file(root / "inner" / "target.txt", b"inner", FRESH)
    age_dir(root / "inner", OLD)
    make_link(root / "old_link_inside", root / "inner" / "target.txt", OLD)

    report = run(root)

    assert not os.path.lexists(root / "old_link_to_file")
    assert not os.path.lexists(root / "old_link_to_dir")
    assert not os.path.lexists(root / "dangling")
    assert not os.path.lexists(root / "old_link_inside")
    assert (root / "new_link_to_dir").is_symlink()
    # Targets, inside or outside, are untouched; nothing was followed into "outside".
    assert precious.read_bytes() == b"keep me"
    assert (outside / "sub" / "also.txt").read_bytes() == b"keep"
    assert (root / "inner" / "target.txt").read_bytes() == b"inner"
    assert report.files_removed == 4
    assert report.freed_bytes == 0  # a link frees no file data


def test_file_removed_mid_run_is_counted_as_vanished(root: Path) -> None:
    for name in ("a", "b", "c"):
        make_file(root / name, b"data", OLD)

    def delete_first(path: Path) -> None:
        if path.name == "b":
            path.unlink()  # another process deletes it between discovery and removal

    report = run(root, before_remove=delete_first)

    assert list(root.iterdir()) == []
    assert report.vanished == 1
    assert report.files_removed == 2
    assert report.errors == 0


def test_file_changed_mid_run_is_kept(root: Path) -> None:
    make_file(root / "busy.log", b"old", OLD)
    make_file(root / "idle.log", b"old", OLD)

    def writer(path: Path) -> None:
        if path.name == "busy.log":
            with path.open("ab") as handle:  # another process appends just before removal
                handle.write(b" and new")

    report = run(root, before_remove=writer)

    assert (root / "busy.log").read_bytes() == b"old and new"
    assert not (root / "idle.log").exists()
    assert report.changed == 1
    assert report.files_removed == 1


def test_file_replaced_by_symlink_mid_run_is_kept_and_target_survives(
    root: Path, outside: Path
) -> None:
    make_file(root / "swap", b"old", OLD)

    def swap(path: Path) -> None:
        path.unlink()
        make_link(path, outside / "precious.txt", OLD)

    report = run(root, before_remove=swap)

    assert (root / "swap").is_symlink()  # a different entry than the one judged: kept
    assert (outside / "precious.txt").read_bytes() == b"keep me"
    assert report.changed == 1


def test_directory_written_to_mid_run_is_kept(root: Path) -> None:
    make_file(root / "d" / "old", b"x", OLD)
    age_dir(root / "d", OLD)

    def late_writer(path: Path) -> None:
        if path.name == "d":
            make_file(path / "arrived", b"new", FRESH)

    report = run(root, before_remove=late_writer)

    assert (root / "d" / "arrived").is_file()
    assert report.dirs_removed == 0
    assert report.changed == 1


def test_dry_run_reports_without_deleting(root: Path, outside: Path, registry) -> None:
    make_file(root / "old.bin", b"x" * 10, OLD)
    make_file(root / "d" / "old2.bin", b"y" * 5, OLD)
    age_dir(root / "d", OLD)
    make_link(root / "link", outside, OLD)
    make_file(root / "new.bin", b"z", FRESH)
    before = sorted(str(p) for p in root.rglob("*"))

    report = run(root, dry_run=True)

    assert sorted(str(p) for p in root.rglob("*")) == before
    assert report.dry_run is True
    assert report.files_removed == 3
    assert report.freed_bytes == 15
    assert report.dirs_removed == 1  # "d" would be empty, and it is old
    assert (
        registry.get_sample_value("bgworkers_files_temp_files_removed_total", {"mode": "dry_run"})
        == 3
    )
    assert (
        registry.get_sample_value("bgworkers_files_temp_files_removed_total", {"mode": "delete"})
        is None
    )


def test_special_files_are_left_alone(root: Path) -> None:
    fifo = root / "pipe"
    os.mkfifo(fifo)
    os.utime(fifo, (OLD, OLD))
    report = run(root)
    assert fifo.exists()
    assert report.special_kept == 1


def test_too_deep_trees_are_not_descended(root: Path) -> None:
    deep = root.joinpath(*["d"] * (MAX_DEPTH + 1))
    make_file(deep / "old", b"x", OLD)
    report = run(root)
    assert (deep / "old").exists()
    assert report.errors == 1


def test_missing_directory_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(TempDirUnavailable, match="does not exist"):
        run(tmp_path / "nope")


def test_root_that_is_a_file_is_a_permanent_error(tmp_path: Path) -> None:
    file = make_file(tmp_path / "file", b"x", OLD)
    with pytest.raises(TempDirUnavailable, match="not a directory"):
        run(file)
    assert file.exists()


def test_naive_now_is_refused(root: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        clean_temp_dir(root=root, max_age=MAX_AGE, now=datetime(2026, 1, 1))


def test_root_that_is_a_symlink_is_refused_and_its_target_untouched(
    tmp_path: Path, outside: Path
) -> None:
    link = make_link(tmp_path / "tmp-link", outside, OLD)
    with pytest.raises(TempDirUnavailable, match="is a symlink"):
        run(link)
    assert (outside / "precious.txt").read_bytes() == b"keep me"
    assert (outside / "sub" / "also.txt").exists()
