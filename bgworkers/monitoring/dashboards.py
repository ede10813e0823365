"""Grafana dashboards as code: the single source of ``deploy/grafana/dashboards/*.json``.

Why generated: a dashboard's JSON is thousands of lines of layout; its meaning is a few dozen
PromQL expressions. They live here, reviewable, and ``python -m bgworkers.monitoring.dashboards``
rewrites the JSON files. A test checks the committed files match, and the monitoring
integration test evaluates every expression against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    description: str = ""
    width: int = 12


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = field(default=("bgworkers",))


def _by_actor(metric: str, window: str = "5m") -> str:
    return f"sum by (queue, actor) (rate({metric}[{window}]))"


def _quantile(q: float) -> tuple[str, str]:
    expr = (
        f"histogram_quantile({q}, sum by (actor, le) "
        "(rate(bgworkers_message_duration_seconds_bucket[5m])))"
    )
    return expr, f"p{round(q * 100)} {{{{actor}}}}"


OVERVIEW = Dashboard(
    "bgworkers-overview",
    "bgworkers — overview",
    (
        Panel(
            "Messages processed / s",
            ((_by_actor("bgworkers_messages_processed_total"), "{{queue}} {{actor}}"),),
            "ops",
        ),
        Panel(
            "Failed runs / s",
            ((_by_actor("bgworkers_messages_failed_total"), "{{queue}} {{actor}}"),),
            "ops",
        ),
        Panel(
            "Retries / s",
            ((_by_actor("bgworkers_messages_retried_total"), "{{queue}} {{actor}}"),),
            "ops",
        ),
        Panel(
            "Dead-lettered (1 h)",
            (
                (
                    "sum by (queue, actor) (increase(bgworkers_messages_dead_lettered_total[1h]))",
                    "{{queue}} {{actor}}",
                ),
            ),
        ),
        Panel(
            "Run time per actor (p50, p95, p99)",
            (_quantile(0.5), _quantile(0.95), _quantile(0.99)),
            "s",
            width=24,
        ),
        Panel(
            "In progress",
            (("sum by (queue, actor) (bgworkers_messages_in_progress)", "{{queue}} {{actor}}"),),
        ),
        Panel(
            "Error ratio (10 m)",
            (
                (
                    "sum by (queue, actor) "
                    "(rate(bgworkers_messages_failed_total[10m])) / "
                    "sum by (queue, actor) "
                    "(rate(bgworkers_messages_processed_total[10m]))",
                    "{{queue}} {{actor}}",
                ),
            ),
            "percentunit",
        ),
        Panel(
            "Queue depth: ready",
            (("max by (queue) (bgworkers_queue_ready_messages)", "{{queue}}"),),
        ),
        Panel(
            "Queue depth: delayed and retrying (.DQ)",
            (("max by (queue) (bgworkers_queue_delayed_messages)", "{{queue}}"),),
        ),
        Panel(
            "Unacknowledged (being processed or held until due)",
            (("max by (queue) (bgworkers_queue_unacked_messages)", "{{queue}}"),),
        ),
        Panel(
            "Dead letters waiting (.XQ)",
            (("max by (queue) (bgworkers_queue_dead_letter_messages)", "{{queue}}"),),
        ),
    ),
)

SCHEDULER = Dashboard(
    "bgworkers-scheduler",
    "bgworkers — scheduler and periodic jobs",
    (
        Panel(
            "Scheduler heartbeat age",
            (
                ("time() - max(bgworkers_scheduler_last_tick_timestamp_seconds)", "last tick sent"),
                (
                    "time() - max(bgworkers_scheduler_heartbeat_timestamp_seconds)",
                    "last beat processed",
                ),
            ),
            "s",
        ),
        Panel("Scheduler target up", (('up{job="bgworkers-scheduler"}', "{{instance}}"),)),
        Panel(
            "Time since last success vs. expected interval",
            (
                (
                    "time() - bgworkers_job_last_success_timestamp_seconds",
                    "{{periodic_job}} since success",
                ),
                ("bgworkers_job_expected_interval_seconds", "{{periodic_job}} expected"),
            ),
            "s",
            width=24,
        ),
        Panel(
            "Runs by outcome (1 h)",
            (
                (
                    "sum by (periodic_job, outcome) (increase(bgworkers_schedule_runs_total[1h]))",
                    "{{periodic_job}} {{outcome}}",
                ),
            ),
        ),
        Panel(
            "Last run duration",
            (
                (
                    "max by (periodic_job) (bgworkers_schedule_last_duration_seconds)",
                    "{{periodic_job}}",
                ),
            ),
            "s",
        ),
        Panel(
            "Skipped ticks (duplicate, overlap) (24 h)",
            (
                (
                    "sum by (periodic_job, reason) "
                    "(increase(bgworkers_schedule_skipped_ticks_total[24h]))",
                    "{{periodic_job}} {{reason}}",
                ),
            ),
        ),
        Panel(
            "Missed and caught-up ticks (24 h)",
            (
                (
                    "sum by (periodic_job) (increase(bgworkers_schedule_missed_ticks_total[24h]))",
                    "{{periodic_job}} missed",
                ),
                (
                    "sum by (periodic_job) "
                    "(increase(bgworkers_schedule_caught_up_ticks_total[24h]))",
                    "{{periodic_job}} caught up",
                ),
            ),
        ),
    ),
)

DOMAINS = Dashboard(
    "bgworkers-domains",
    "bgworkers — emails, reminders, sync, files",
    (
        Panel(
            "Emails sent / failed (1 h)",
            (
                ("sum(increase(bgworkers_email_sent_total[1h]))", "sent"),
                (
                    "sum by (reason) (increase(bgworkers_email_failed_total[1h]))",
                    "failed {{reason}}",
                ),
            ),
        ),
        Panel(
            "SMTP send time p95",
            (
                (
                    "histogram_quantile(0.95, sum by (le) "
                    "(rate(bgworkers_email_send_duration_seconds_bucket[15m])))",
                    "p95",
                ),
            ),
            "s",
        ),
        Panel(
            "Reminders fired (1 h)",
            (
                (
                    "sum by (recurring) (increase(bgworkers_reminders_fired_total[1h]))",
                    "recurring={{recurring}}",
                ),
            ),
        ),
        Panel(
            "Reminder firing delay p95",
            (
                (
                    "histogram_quantile(0.95, sum by (le) (rate("
                    "bgworkers_reminders_firing_delay_seconds_bucket"
                    "[15m])))",
                    "p95",
                ),
            ),
            "s",
        ),
        Panel(
            "Daily summaries sent (24 h)",
            (("sum(increase(bgworkers_summaries_sent_total[24h]))", "sent"),),
        ),
        Panel(
            "Calendar and Notion items synced (1 h)",
            (
                (
                    "sum by (provider, action) (increase(bgworkers_sync_items_total[1h]))",
                    "{{provider}} {{action}}",
                ),
            ),
        ),
        Panel(
            "API calls by status (1 h)",
            (
                (
                    "sum by (provider, status_class) "
                    "(increase(bgworkers_sync_http_requests_total[1h]))",
                    "{{provider}} {{status_class}}",
                ),
            ),
        ),
        Panel(
            "Sync runs by outcome (1 h)",
            (
                (
                    "sum by (provider, outcome) (increase(bgworkers_sync_runs_total[1h]))",
                    "{{provider}} {{outcome}}",
                ),
            ),
        ),
        Panel(
            "Temp files removed and bytes freed (24 h)",
            (
                ("sum(increase(bgworkers_files_temp_files_removed_total[24h]))", "files"),
                ("sum(increase(bgworkers_files_temp_freed_bytes_total[24h]))", "bytes"),
            ),
        ),
        Panel(
            "Backups by outcome and bytes written (7 d)",
            (
                ("sum by (outcome) (increase(bgworkers_files_backups_total[7d]))", "{{outcome}}"),
                ("sum(increase(bgworkers_files_backup_written_bytes_total[7d]))", "bytes"),
            ),
        ),
        Panel(
            "Expired sessions deleted (24 h)",
            (("sum(increase(bgworkers_maintenance_sessions_deleted_total[24h]))", "deleted"),),
        ),
        Panel(
            "Database size before/after optimisation",
            (
                (
                    "max by (backend, phase) (bgworkers_maintenance_database_size_bytes)",
                    "{{backend}} {{phase}}",
                ),
            ),
            "bytes",
        ),
    ),
)

DASHBOARDS = (OVERVIEW, SCHEDULER, DOMAINS)


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    x = y = 0
    for number, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y = 0, y + 8
        panels.append(
            {
                "id": number,
                "type": "timeseries",
                "title": panel.title,
                "description": panel.description,
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    {
                        "refId": chr(ord("A") + i),
                        "datasource": DATASOURCE,
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for i, (expr, legend) in enumerate(panel.targets)
                ],
            }
        )
        x += panel.width
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "tags": list(dashboard.tags),
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "panels": panels,
    }


def expressions() -> list[str]:
    """Every PromQL expression of every dashboard."""
    return [expr for d in DASHBOARDS for p in d.panels for expr, _ in p.targets]


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in DASHBOARDS:
        path = directory / f"{dashboard.uid}.json"
        path.write_text(json.dumps(render(dashboard), indent=2) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("deploy/grafana/dashboards")
    for written_path in write(target):
        print(written_path)
