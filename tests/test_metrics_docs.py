"""Every metric bgworkers exports is documented, and the exposition is valid for Prometheus."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import bgworkers
import bgworkers.monitoring.job_health
import bgworkers.monitoring.queue_depth  # noqa: F401
from bgworkers.metrics import LazyMetrics
from tests.platform_helpers import IN_CI

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
COLLECTOR_METRICS = (
    "bgworkers_queue_ready_messages",
    "bgworkers_queue_delayed_messages",
    "bgworkers_queue_dead_letter_messages",
    "bgworkers_queue_unacked_messages",
    "bgworkers_queue_depth_last_success_timestamp_seconds",
    "bgworkers_queue_depth_read_errors_total",
    "bgworkers_scheduler_last_tick_timestamp_seconds",
    "bgworkers_job_last_success_timestamp_seconds",
    "bgworkers_job_expected_interval_seconds",
    "bgworkers_outbox_backlog_messages",
    "bgworkers_outbox_backlog_oldest_age_seconds",
    "bgworkers_job_paused",
    "bgworkers_maintenance_database_size_bytes",
    "bgworkers_worker_group_resident_memory_bytes",
    "bgworkers_worker_group_cpu_seconds_total",
    "bgworkers_worker_group_processes",
)


def all_metric_names() -> set[str]:
    registry = CollectorRegistry()
    for metric_set in LazyMetrics.declared:
        metric_set.build(registry)
    names = set()
    for family in registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        names.add(family.name + suffix)
    return names


def test_every_metric_is_documented() -> None:
    text = DOC.read_text()
    names = all_metric_names() | set(COLLECTOR_METRICS)
    assert len(names) > 20
    undocumented = sorted(name for name in names if f"`{name}`" not in text)
    assert undocumented == []


def test_exposition_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if IN_CI:
            pytest.fail("promtool not installed (Debian package 'prometheus')")
        pytest.skip("promtool not installed")
    registry = CollectorRegistry()
    for metric_set in LazyMetrics.declared:
        metric_set.build(registry)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=generate_latest(registry), capture_output=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_email_help_texts_match_the_table() -> None:
    """The table says what each email metric counts, as the exporter does."""
    from bgworkers.email.metrics import EmailMetrics

    registry = CollectorRegistry()
    EmailMetrics.build(registry)
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`bgworkers_"):
            rows[cells[0].strip("`")] = cells[3]
    checked = 0
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert rows.get(name) == family.documentation, name
        checked += 1
    assert checked >= 7
