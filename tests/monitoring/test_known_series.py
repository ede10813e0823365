"""Every documented counter exists at 0 from a process's start, for every known label set.

Why it matters: ``increase()`` needs a sample before the first event; a counter that appears
at its first increment is invisible to alerts and dashboards (see
:mod:`bgworkers.stack.known_series`). The unit tests read a fresh registry after the worker
processes' start-up call; the integration test reads the exposition of a real worker group
and a real scheduler, before any message is processed.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import bgworkers
from bgworkers import queues
from bgworkers.metrics import LazyMetrics
from bgworkers.metrics.messages import DURATION_BUCKETS
from bgworkers.settings import get_settings
from bgworkers.stack.known_series import actor_labels, initialise_worker_series, periodic_jobs
from tests.monitoring.ports import METRICS_PORTS, port_from
from tests.platform_helpers import wait_for
from tests.service_processes import Stack

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "metrics.md"
BIN = Path(sys.executable).parent
ROW = re.compile(r"^\| `(bgworkers_[a-z_]+)` \| (counter|gauge|histogram) \|", re.MULTILINE)
#: Counters not recorded by worker processes: who exports them instead.
SCHEDULER_COUNTERS = {
    "bgworkers_scheduler_ticks_sent_total",
    "bgworkers_scheduler_send_failures_total",
}
FORK_COUNTERS = {
    "bgworkers_queue_depth_read_errors_total",
    "bgworkers_worker_group_cpu_seconds_total",  # read from /proc at each scrape
}


def documented(kind: str) -> set[str]:
    return {name for name, found in ROW.findall(DOC.read_text()) if found == kind}


def samples(families: object) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Counter samples (``*_total``) by name; histograms' ``_count`` and ``_sum`` too."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in families:  # type: ignore[attr-defined]
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def zeroed_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    from bgworkers.metrics import use_registry

    use_registry(registry)
    initialise_worker_series(bgworkers.broker.actors, database_backend="postgresql")
    return registry


def test_every_documented_worker_counter_exists_at_zero_after_start_up() -> None:
    found = samples(zeroed_registry().collect())
    counters = documented("counter") - SCHEDULER_COUNTERS - FORK_COUNTERS
    assert len(counters) >= 45
    missing = sorted(name for name in counters if not found.get(name))
    assert missing == []
    nonzero = sorted(name for name in counters if any(v for _, v in found[name]))
    assert nonzero == []
    for histogram in documented("histogram"):
        assert found.get(f"{histogram}_count"), histogram


def test_queue_actor_pairs_and_jobs_are_all_there() -> None:
    found = samples(zeroed_registry().collect())
    pairs = actor_labels(bgworkers.broker.actors)
    assert len(pairs) >= 15
    processed = {(s["queue"], s["actor"]) for s, _ in found["bgworkers_messages_processed_total"]}
    assert processed == set(pairs)
    missed = {s["periodic_job"] for s, _ in found["bgworkers_schedule_missed_ticks_total"]}
    assert missed == set(periodic_jobs())
    invalid = found["bgworkers_messages_invalid_total"]
    assert len(invalid) == len(queues.ALL) * 9  # queues x refusal reasons


def label_literals(tree: ast.AST) -> set[str]:
    """Words passed to ``.labels(...)`` calls: plain string constants, also inside
    ``a or "x"`` and ``"x" if c else "y"`` (not subscripts' keys nor f-string pieces)."""

    def words(node: ast.expr) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.BoolOp):
            return set().union(*(words(value) for value in node.values))
        if isinstance(node, ast.IfExp):
            return words(node.body) | words(node.orelse)
        return set()

    found: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "labels"
        ):
            for value in [*node.args, *(k.value for k in node.keywords)]:
                found |= words(value)
    return found


def test_every_label_word_in_the_code_is_a_known_label_value() -> None:
    """A new reason or outcome written at a call site must be added to its domain's list,
    or its series would again appear only at its first event."""
    known = {
        value
        for family in zeroed_registry().collect()
        for sample in family.samples
        for value in sample.labels.values()
    }
    used: set[str] = set()
    for path in (ROOT / "bgworkers").rglob("*.py"):
        used |= label_literals(ast.parse(path.read_text()))
    assert len(used) > 20
    assert sorted(used - known) == []


def test_message_duration_buckets_cover_the_longest_time_limit() -> None:
    default_ms = get_settings().time_limit_ms
    longest_s = (
        max(
            actor.options.get("time_limit", default_ms)
            for actor in bgworkers.broker.actors.values()
        )
        / 1000
    )
    assert longest_s >= 25 * 60  # optimize_database
    assert DURATION_BUCKETS[-1] >= longest_s


def test_every_declared_metric_set_is_built_at_start_up() -> None:
    """No metric set may be left lazy (it would appear only at its first use)."""
    registry = zeroed_registry()
    built = {family.name for family in registry.collect()}
    from bgworkers.scheduling.metrics import SCHEDULER_METRICS

    for metric_set in LazyMetrics.declared:
        if metric_set is SCHEDULER_METRICS:
            continue  # the scheduler's own (checked below, on a real scheduler)
        names = {family.name for family in _families(metric_set)}
        assert names <= built, names - built


def _families(metric_set: LazyMetrics[object]) -> list[object]:
    registry = CollectorRegistry()
    metric_set.build(registry)
    return list(registry.collect())


def read_exposition(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


@pytest.mark.integration
def test_real_worker_group_and_scheduler_export_every_documented_counter_at_zero(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    worker_port, scheduler_port = port_from(METRICS_PORTS), port_from(METRICS_PORTS)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BGW_BROKER_URL": rabbitmq_url,
        "BGW_DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
        "BGW_METRICS_DIR": str(tmp_path / "metrics"),
        "BGW_METRICS_PORT": str(worker_port),
        "BGW_SCHEDULER_METRICS_PORT": str(scheduler_port),
        "BGW_RABBITMQ_MANAGEMENT_URL": "off",
        "BGW_QUEUE_DEPTH_INTERVAL_S": "1",
        "TZ": "UTC",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run([str(BIN / "bgworkers"), "migrate"], env=env, check=True, capture_output=True)
    for queue in bgworkers.broker.get_declared_queues():
        bgworkers.broker.flush(queue)
    stack = Stack(tmp_path)
    try:
        # Two processes: the sum of two processes' zero files must still be 0 for each series.
        stack.start("worker", [str(BIN / "dramatiq"), "bgworkers", "-p", "2", "-t", "1"], env)

        def worker_text() -> str:
            try:
                return read_exposition(worker_port)
            except OSError:
                return ""

        wait_for(
            lambda: "bgworkers_sync_http_requests_total{" in worker_text(),
            timeout_s=60,
            what="the worker group's exposition",
        )
        found = samples(text_string_to_metric_families(worker_text()))
        counters = documented("counter") - SCHEDULER_COUNTERS
        missing = sorted(name for name in counters if not found.get(name))
        assert missing == [], "documented counters absent before their first event"
        nonzero = sorted(
            name
            for name in counters - {"bgworkers_worker_group_cpu_seconds_total"}  # CPU time so far
            if any(v for _, v in found[name])
        )
        assert nonzero == []
        label_sets = sum(len(found[name]) for name in counters)
        print(f"worker group: {len(counters)} counters, {label_sets} label sets at 0")
        actors = {(s["queue"], s["actor"]) for s, _ in found["bgworkers_messages_failed_total"]}
        own = {  # the group imports bgworkers only; this test process may hold test actors
            name: actor
            for name, actor in bgworkers.broker.actors.items()
            if not actor.fn.__module__.startswith("tests.")
        }
        assert actors == set(actor_labels(own))

        stack.start("scheduler", [str(BIN / "periodiq"), "bgworkers"], env)

        def scheduler_text() -> str:
            try:
                return read_exposition(scheduler_port)
            except OSError:
                return ""

        wait_for(
            lambda: "bgworkers_scheduler_ticks_sent_total{" in scheduler_text(),
            timeout_s=60,
            what="the scheduler's exposition",
        )
        found = samples(text_string_to_metric_families(scheduler_text()))
        for name in SCHEDULER_COUNTERS:
            jobs = {labels["periodic_job"] for labels, _ in found[name]}
            assert jobs == set(periodic_jobs()), name
        assert all(v == 0 for _, v in found["bgworkers_scheduler_send_failures_total"])
        # A job not due in the first minutes has been sent no tick yet, and shows 0.
        sent = {s["periodic_job"]: v for s, v in found["bgworkers_scheduler_ticks_sent_total"]}
        assert sent["backup_user_data"] == 0
        wait_for(
            lambda: "bgworkers_scheduler_next_wakeup_timestamp_seconds " in scheduler_text(),
            timeout_s=90,
            what="the scheduler's first wake-up",
        )
    finally:
        stack.stop()
