"""Grafana dashboards as code: the single source of ``deploy/grafana/dashboards/*.json``.

Why generated: a dashboard's JSON is thousands of lines of layout; its meaning is a few dozen
PromQL expressions. They live here, reviewable, and ``python -m tools.grafana_dashboards``
rewrites the JSON files. Tests check the committed files match, validate them against the
types of Grafana's dashboard schema, and evaluate every expression against a real Prometheus
(values compared with what the workload did).

Rules every panel follows, so an operator reads it at a glance:

* a description (what it shows, and what to do when it looks wrong) and a unit;
* few series: per-queue or per-job aggregates, ``topk(10, ...)`` where there is one series per
  actor, tables for per-job facts whose scales differ (a minute and a week);
* every expression works with 1..N worker groups: values every group exports alike (read from
  RabbitMQ or the database) are taken with ``max``, counters summed;
* counts over a window are ``round()``-ed: ``increase()`` extrapolates a little past the last
  sample, and 10 emails must read 10.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
#: The queue and actor variables' selector for message metrics.
QA = '{queue=~"$queue", actor=~"$actor"}'
#: What the variables stand for when "All" is chosen (and when the tests evaluate expressions).
ALL = ".*"

Kind = Literal["timeseries", "stat", "table"]


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    description: str
    unit: str = "short"
    kind: Kind = "timeseries"
    width: int = 12
    #: Stat panels: the value from which the panel turns red (None: never).
    red_from: float | None = None


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: bool = False
    tags: tuple[str, ...] = field(default=("bgworkers",))


def _count(expr: str) -> str:
    """A count over a window, rounded (see the module doc)."""
    return f"round({expr})"


def _quantile(q: float, by: str = "") -> str:
    group = f"{by}, le" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({group}) "
        f"(rate(bgworkers_message_duration_seconds_bucket{QA}[5m])))"
    )


_SINCE_SUCCESS = "time() - max by (periodic_job) (bgworkers_job_last_success_timestamp_seconds)"
_EXPECTED = "max by (periodic_job) (bgworkers_job_expected_interval_seconds)"

OVERVIEW = Dashboard(
    "bgworkers-overview",
    "bgworkers — overview",
    "Message throughput, failures, run times and queue depths of every worker group.",
    (
        Panel(
            "Targets up",
            (
                ('sum(up{job=~"bgworkers-workers|bgworkers-scheduler"})', "up"),
                ('count(up{job=~"bgworkers-workers|bgworkers-scheduler"})', "scraped"),
            ),
            "Worker groups and schedulers answering scrapes, of those Prometheus scrapes. "
            "Fewer up than scraped: BgworkersWorkerDown or BgworkersSchedulerDown.",
            kind="stat",
            width=4,
        ),
        Panel(
            "Dead letters waiting",
            (("sum(max by (queue) (bgworkers_queue_dead_letter_messages))", "dead letters"),),
            "Messages in the <queue>.XQ queues (RabbitMQ keeps them 7 days). "
            "`bgworkers dead list` shows them; requeue or purge (docs/console.md).",
            kind="stat",
            width=4,
            red_from=1,
        ),
        Panel(
            "Most overdue periodic job",
            (
                (
                    f"max(clamp_min(({_SINCE_SUCCESS}) - ({_EXPECTED}), 0))",
                    "past its interval",
                ),
            ),
            "How far past its expected interval the most late periodic job is since its last "
            "success (0: every job succeeded within its interval). The scheduler dashboard "
            "lists each job.",
            unit="s",
            kind="stat",
            width=4,
            red_from=600,
        ),
        Panel(
            "Queue backlog",
            (("sum(max by (queue) (bgworkers_queue_ready_messages))", "ready"),),
            "Messages waiting in all five queues, not yet delivered to a worker.",
            kind="stat",
            width=4,
            red_from=100,
        ),
        Panel(
            "Active alerts",
            (
                (
                    'count(ALERTS{alertstate="firing", alertname=~"Bgworkers.*|RabbitMQDown"})'
                    " or vector(0)",
                    "firing",
                ),
            ),
            "bgworkers alerts firing now (Prometheus's Alerts page lists them with runbooks).",
            kind="stat",
            width=4,
            red_from=1,
        ),
        Panel(
            "Age of the queue-depth reading",
            (("time() - max(bgworkers_queue_depth_last_success_timestamp_seconds)", "age"),),
            "Seconds since a metrics process last read the queue depths from RabbitMQ "
            "(BGW_QUEUE_DEPTH_INTERVAL_S). Large: depth panels and alerts are blind "
            "(BgworkersQueueDepthUnknown).",
            unit="s",
            kind="stat",
            width=4,
            red_from=300,
        ),
        Panel(
            "Messages processed / s, by queue",
            ((f"sum by (queue) (rate(bgworkers_messages_processed_total{QA}[5m]))", "{{queue}}"),),
            "Runs finished per second (successful or not), every worker group together.",
            unit="ops",
        ),
        Panel(
            "Busiest actors (top 10), runs / s",
            (
                (
                    f"topk(10, sum by (queue, actor) "
                    f"(rate(bgworkers_messages_processed_total{QA}[5m])))",
                    "{{queue}} {{actor}}",
                ),
            ),
            "The ten actors with the most runs per second; pick a queue or actor above.",
            unit="ops",
        ),
        Panel(
            "Failures and retries / s, by queue",
            (
                (
                    f"sum by (queue) (rate(bgworkers_messages_failed_total{QA}[5m]))",
                    "failed {{queue}}",
                ),
                (
                    f"sum by (queue) (rate(bgworkers_messages_retried_total{QA}[5m]))",
                    "retried {{queue}}",
                ),
            ),
            "Runs that raised, and those scheduled for another attempt. Failures without "
            "retries are permanent errors or exhausted retries (dead letters).",
            unit="ops",
        ),
        Panel(
            "Dead-lettered and skipped (1 h), by queue",
            (
                (
                    _count(
                        f"sum by (queue) (increase(bgworkers_messages_dead_lettered_total{QA}[1h]))"
                    ),
                    "dead-lettered {{queue}}",
                ),
                (
                    _count(f"sum by (queue) (increase(bgworkers_messages_skipped_total{QA}[1h]))"),
                    "skipped {{queue}}",
                ),
            ),
            "Messages given up (moved to <queue>.XQ) and messages a middleware skipped "
            "without running them (e.g. a duplicate scheduled tick), over the last hour.",
        ),
        Panel(
            "Redelivered (1 h), by queue",
            (
                (
                    _count(
                        "sum by (queue) (increase(bgworkers_messages_redelivered_total"
                        '{queue=~"$queue"}[1h]))'
                    ),
                    "redelivered {{queue}}",
                ),
            ),
            "Messages RabbitMQ handed out again because the worker that had them died or lost "
            "its connection before acking: rescued work. A steady rate means a crash loop.",
        ),
        Panel(
            "Error ratio (10 m), top 10 actors",
            (
                (
                    "topk(10, sum by (queue, actor) "
                    f"(rate(bgworkers_messages_failed_total{QA}[10m])) / sum by (queue, actor) "
                    f"(rate(bgworkers_messages_processed_total{QA}[10m])))",
                    "{{queue}} {{actor}}",
                ),
            ),
            "Share of runs that raised over 10 minutes. Above 25 % for 10 minutes: "
            "BgworkersErrorRatioHigh.",
            unit="percentunit",
        ),
        Panel(
            "Run time p50 / p95 / p99",
            (
                (_quantile(0.5), "p50"),
                (_quantile(0.95), "p95"),
                (_quantile(0.99), "p99"),
            ),
            "Run time of one message over the selected queues and actors (buckets up to "
            "30 minutes, past the longest time limit).",
            unit="s",
        ),
        Panel(
            "Slowest actors (p95, top 10)",
            (("topk(10, " + _quantile(0.95, "queue, actor") + ")", "{{queue}} {{actor}}"),),
            "95th percentile run time of the ten slowest actors over 5 minutes.",
            unit="s",
        ),
        Panel(
            "In progress, by queue",
            ((f"sum by (queue) (bgworkers_messages_in_progress{QA})", "{{queue}}"),),
            "Messages running now. Flat at the thread count: the workers are saturated; a "
            "message stuck here for long is a hung run.",
        ),
        Panel(
            "Queue depth: ready",
            (('max by (queue) (bgworkers_queue_ready_messages{queue=~"$queue"})', "{{queue}}"),),
            "Messages waiting in each queue. Over 100 and growing for 15 minutes: "
            "BgworkersQueueBacklogGrowing.",
        ),
        Panel(
            "Queue depth: delayed and retrying (.DQ)",
            (('max by (queue) (bgworkers_queue_delayed_messages{queue=~"$queue"})', "{{queue}}"),),
            "Delayed and retrying messages, including those workers hold until due "
            "(with the management API).",
        ),
        Panel(
            "Unacknowledged (being processed or held until due)",
            (('max by (queue) (bgworkers_queue_unacked_messages{queue=~"$queue"})', "{{queue}}"),),
            "Messages delivered to workers and not yet acknowledged (management API only).",
        ),
        Panel(
            "Dead letters waiting (.XQ), by queue",
            (
                (
                    'max by (queue) (bgworkers_queue_dead_letter_messages{queue=~"$queue"})',
                    "{{queue}}",
                ),
            ),
            "Dead-lettered messages kept in each <queue>.XQ (BgworkersDeadLetters after "
            "5 minutes).",
        ),
        Panel(
            "Worker group memory",
            (
                (
                    "sum by (instance, role) (bgworkers_worker_group_resident_memory_bytes)",
                    "{{instance}} {{role}}",
                ),
            ),
            "Resident memory of each worker group: the dramatiq main process and its worker "
            "processes (summed).",
            unit="bytes",
        ),
        Panel(
            "Worker group CPU",
            (
                (
                    "sum by (instance, role) (rate(bgworkers_worker_group_cpu_seconds_total[5m]))",
                    "{{instance}} {{role}}",
                ),
            ),
            "CPU used by each worker group's processes (1.0 = 100 % = one core).",
            unit="percentunit",
        ),
    ),
    variables=True,
)

SCHEDULER = Dashboard(
    "bgworkers-scheduler",
    "bgworkers — scheduler and periodic jobs",
    "The scheduler's liveness and sends, and each periodic job's health.",
    (
        Panel(
            "Heartbeat age",
            (("time() - max(bgworkers_scheduler_last_tick_timestamp_seconds)", "age"),),
            "Seconds since the newest heartbeat tick a worker recorded in the database. "
            "Over 5 minutes: BgworkersSchedulerHeartbeatStale.",
            unit="s",
            kind="stat",
            width=6,
            red_from=300,
        ),
        Panel(
            "Schedulers up",
            (('sum(up{job="bgworkers-scheduler"})', "up"),),
            "periodiq bgworkers processes answering scrapes (two may run: ticks are deduplicated).",
            kind="stat",
            width=6,
        ),
        Panel(
            "Next planned wake-up",
            (("max(bgworkers_scheduler_next_wakeup_timestamp_seconds) - time()", "in"),),
            "Seconds until the scheduler's loop means to wake up; negative: it is late "
            "(stuck, or retrying a send): BgworkersSchedulerStuck after 2 minutes.",
            unit="s",
            kind="stat",
            width=6,
        ),
        Panel(
            "Missed ticks (24 h)",
            ((_count("sum(increase(bgworkers_schedule_missed_ticks_total[24h]))"), "missed"),),
            "Ticks never sent (scheduler down) and older than their job's catch-up window: "
            "that work was skipped (BgworkersMissedTicks).",
            kind="stat",
            width=6,
            red_from=1,
        ),
        Panel(
            "Periodic jobs: time since success against the expected interval",
            (
                (_SINCE_SUCCESS, "since success"),
                (_EXPECTED, "expected interval"),
                (f"({_SINCE_SUCCESS}) / ({_EXPECTED})", "ratio"),
                ("max by (periodic_job) (bgworkers_job_paused)", "paused"),
            ),
            "One row per job: time since its last success (from the database), its longest "
            "gap between ticks, and their ratio. Above 1.5 (plus 10 minutes): "
            "BgworkersJobOverdue, unless paused.",
            unit="s",
            kind="table",
            width=24,
        ),
        Panel(
            "Ticks sent by the scheduler (1 h), by job",
            (
                (
                    _count(
                        "sum by (periodic_job) (increase(bgworkers_scheduler_ticks_sent_total[1h]))"
                    ),
                    "{{periodic_job}}",
                ),
            ),
            "Ticks each job was sent over the last hour, by every scheduler together.",
        ),
        Panel(
            "Scheduler send failures (1 h)",
            (
                (
                    _count("sum(increase(bgworkers_scheduler_send_failures_total[1h]))"),
                    "failed attempts",
                ),
            ),
            "Attempts to send a tick that RabbitMQ did not take (each is retried with "
            "backoff); BgworkersSchedulerSendFailing.",
        ),
        Panel(
            "Runs by outcome (1 h)",
            (
                (
                    _count("sum by (outcome) (increase(bgworkers_schedule_runs_total[1h]))"),
                    "{{outcome}}",
                ),
            ),
            "Attempts of scheduled ticks over the last hour: succeeded, retried, dead-lettered.",
        ),
        Panel(
            "Failed scheduled runs (24 h), top 10 jobs",
            (
                (
                    _count(
                        "topk(10, sum by (periodic_job) "
                        "(increase(bgworkers_schedule_failures_total[24h])))"
                    ),
                    "{{periodic_job}}",
                ),
            ),
            "Scheduled runs that raised, per job; `bgworkers schedule` shows each job's last "
            "outcome.",
        ),
        Panel(
            "Last run duration, top 10 jobs",
            (
                (
                    "topk(10, max by (periodic_job) (bgworkers_schedule_last_duration_seconds))",
                    "{{periodic_job}}",
                ),
            ),
            "Duration of each job's last finished attempt (worker processes since their start).",
            unit="s",
        ),
        Panel(
            "Skipped ticks (24 h), by reason",
            (
                (
                    _count(
                        "sum by (reason) (increase(bgworkers_schedule_skipped_ticks_total[24h]))"
                    ),
                    "{{reason}}",
                ),
            ),
            "Scheduled messages not run: duplicate (tick already claimed, e.g. two "
            "schedulers), overlap (previous run still going), paused (by an operator).",
        ),
        Panel(
            "Missed and caught-up ticks (24 h), top 10 jobs",
            (
                (
                    _count(
                        "topk(10, sum by (periodic_job) "
                        "(increase(bgworkers_schedule_missed_ticks_total[24h])))"
                    ),
                    "missed {{periodic_job}}",
                ),
                (
                    _count(
                        "topk(10, sum by (periodic_job) "
                        "(increase(bgworkers_schedule_caught_up_ticks_total[24h])))"
                    ),
                    "caught up {{periodic_job}}",
                ),
            ),
            "After a scheduler outage: ticks re-sent within their job's window (caught up) "
            "and those older than it (missed).",
        ),
    ),
)


def _total(metric: str, window: str, legend: str, by: str = "") -> tuple[str, str]:
    grouping = f" by ({by})" if by else ""
    return _count(f"sum{grouping} (increase({metric}[{window}]))"), legend


DOMAINS = Dashboard(
    "bgworkers-domains",
    "bgworkers — emails, reminders, sync, files",
    "What the domain jobs did: emails, reminders and summaries, calendar and Notion sync, "
    "temporary files, backups and database upkeep.",
    (
        Panel(
            "Emails sent (24 h)",
            (_total("bgworkers_email_sent_total", "24h", "sent"),),
            "Emails the SMTP server accepted over the last day.",
            kind="stat",
            width=6,
        ),
        Panel(
            "Emails given up (24 h)",
            (_total("bgworkers_email_failed_total", "24h", "failed"),),
            "Emails marked failed: rejected by the server (5xx) or out of attempts "
            "(BgworkersEmailsFailing).",
            kind="stat",
            width=6,
            red_from=1,
        ),
        Panel(
            "Reminders fired (24 h)",
            (_total("bgworkers_reminders_fired_total", "24h", "fired"),),
            "Reminder occurrences written to the email outbox over the last day.",
            kind="stat",
            width=6,
        ),
        Panel(
            "Reminder delay p95 (1 h)",
            (
                (
                    "histogram_quantile(0.95, sum by (le) "
                    "(rate(bgworkers_reminders_firing_delay_seconds_bucket[1h])))",
                    "p95",
                ),
            ),
            "Seconds from a reminder's due time to its firing, 95th percentile "
            "(BgworkersReminderDelayHigh above 2 minutes).",
            unit="s",
            kind="stat",
            width=6,
            red_from=120,
        ),
        Panel(
            "Emails sent and given up (1 h)",
            (
                _total("bgworkers_email_sent_total", "1h", "sent"),
                _total("bgworkers_email_failed_total", "1h", "failed {{reason}}", "reason"),
            ),
            "Over the last hour: accepted by the server, and given up by reason.",
        ),
        Panel(
            "SMTP errors and recovered emails (1 h)",
            (
                _total("bgworkers_email_send_errors_total", "1h", "error {{kind}}", "kind"),
                _total("bgworkers_email_recovered_total", "1h", "recovered"),
                _total("bgworkers_email_claims_skipped_total", "1h", "already taken"),
            ),
            "Failed SMTP attempts (transient ones are retried), emails stuck in 'sending' put "
            "back in the queue, and send_email runs that found their email already taken.",
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
            "Time of one SMTP delivery attempt, 95th percentile over 15 minutes.",
            unit="s",
        ),
        Panel(
            "Reminders fired and skipped (1 h)",
            (
                _total(
                    "bgworkers_reminders_fired_total",
                    "1h",
                    "fired recurring={{recurring}}",
                    "recurring",
                ),
                _total("bgworkers_reminders_skipped_total", "1h", "skipped {{reason}}", "reason"),
            ),
            "Reminder occurrences fired, and fire_reminder runs that did nothing (cancelled, "
            "not yet due, already fired by another run).",
        ),
        Panel(
            "Daily summaries (24 h)",
            (
                _total("bgworkers_summaries_sent_total", "24h", "sent"),
                _total("bgworkers_summaries_skipped_total", "24h", "skipped {{reason}}", "reason"),
            ),
            "Daily summaries written to the outbox, and per-user runs that did nothing.",
        ),
        Panel(
            "Calendar and Notion items synced (1 h)",
            (
                _total(
                    "bgworkers_sync_items_total",
                    "1h",
                    "{{provider}} {{action}}",
                    "provider, action",
                ),
            ),
            "Items upserted, removed, archived or malformed, per provider.",
        ),
        Panel(
            "Sync runs by outcome (1 h)",
            (
                _total(
                    "bgworkers_sync_runs_total",
                    "1h",
                    "{{provider}} {{outcome}}",
                    "provider, outcome",
                ),
            ),
            "Per-user sync runs: completed, superseded, skipped, or failed (transient errors "
            "retry).",
        ),
        Panel(
            "API calls by status (1 h)",
            (
                _total(
                    "bgworkers_sync_http_requests_total",
                    "1h",
                    "{{provider}} {{status_class}}",
                    "provider, status_class",
                ),
            ),
            "HTTP attempts to Google Calendar and Notion by status class (429s are 4xx).",
        ),
        Panel(
            "API retries inside a message (1 h)",
            (
                _total(
                    "bgworkers_sync_http_retries_total",
                    "1h",
                    "{{provider}} {{kind}}",
                    "provider, kind",
                ),
            ),
            "HTTP attempts retried within the same run (transport errors, 429, 5xx).",
        ),
        Panel(
            "Rate-limit waits",
            (
                (
                    "sum by (provider) (rate(bgworkers_sync_rate_limit_wait_seconds_total[5m]))",
                    "{{provider}}",
                ),
            ),
            "Share of time sync threads spend waiting for the client-side rate limiter "
            "(1.0 = one thread waiting all the time).",
            unit="percentunit",
        ),
        Panel(
            "Temporary files removed (24 h)",
            (
                _total("bgworkers_files_temp_files_removed_total", "24h", "files {{mode}}", "mode"),
                _total(
                    "bgworkers_files_temp_dirs_removed_total", "24h", "directories {{mode}}", "mode"
                ),
            ),
            "Old temporary files and empty directories removed (dry_run: would have been).",
        ),
        Panel(
            "Temporary bytes freed (24 h)",
            (_total("bgworkers_files_temp_freed_bytes_total", "24h", "{{mode}}", "mode"),),
            "Apparent size of the temporary files removed.",
            unit="bytes",
        ),
        Panel(
            "Backups by outcome (7 d)",
            (_total("bgworkers_files_backups_total", "7d", "{{outcome}}", "outcome"),),
            "Per-user backup runs: written, already present (a rerun), user missing.",
        ),
        Panel(
            "Backup bytes written (7 d)",
            (_total("bgworkers_files_backup_written_bytes_total", "7d", "written"),),
            "Bytes of backup archives written over the last week.",
            unit="bytes",
        ),
        Panel(
            "Expired sessions deleted (24 h)",
            (_total("bgworkers_maintenance_sessions_deleted_total", "24h", "deleted"),),
            "User sessions past their expiry deleted by cleanup_old_sessions.",
        ),
        Panel(
            "Database size before and after optimisation",
            (
                (
                    "max by (backend, phase) (bgworkers_maintenance_database_size_bytes)",
                    "{{backend}} {{phase}}",
                ),
            ),
            "Measured by the weekly optimize_database run and kept in the database, so it "
            "shows after any restart.",
            unit="bytes",
        ),
    ),
)

DASHBOARDS = (OVERVIEW, SCHEDULER, DOMAINS)


def _variables() -> list[dict[str, Any]]:
    def variable(name: str, query: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": name,
            "type": "query",
            "datasource": DATASOURCE,
            "query": {"query": query, "refId": f"{name}-values"},
            "refresh": 2,
            "includeAll": True,
            "allValue": ALL,
            "multi": True,
            "current": {"text": ["All"], "value": ["$__all"]},
            "sort": 1,
        }

    return [
        variable("queue", "label_values(bgworkers_messages_processed_total, queue)"),
        variable(
            "actor", 'label_values(bgworkers_messages_processed_total{queue=~"$queue"}, actor)'
        ),
    ]


def _thresholds(red_from: float | None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if red_from is not None:
        steps.append({"color": "red", "value": red_from})
    return {"mode": "absolute", "steps": steps}


def _panel(number: int, panel: Panel, x: int, y: int, height: int) -> dict[str, Any]:
    instant = panel.kind != "timeseries"
    targets = [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "expr": expr,
            "legendFormat": legend,
            "instant": instant,
            "range": not instant,
            **({"format": "table"} if panel.kind == "table" else {}),
        }
        for i, (expr, legend) in enumerate(panel.targets)
    ]
    rendered: dict[str, Any] = {
        "id": number,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": height, "w": panel.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "thresholds": _thresholds(panel.red_from)},
            "overrides": [],
        },
    }
    if panel.kind == "timeseries":
        rendered["options"] = {
            "legend": {
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": True,
                "calcs": [],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind == "stat":
        rendered["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background" if panel.red_from is not None else "value",
            "graphMode": "none",
            "textMode": "value_and_name",
            "justifyMode": "auto",
            "orientation": "auto",
        }
    else:  # table: one row per job, the instant queries merged on their labels
        rendered["options"] = {"showHeader": True, "cellHeight": "sm"}
        rendered["transformations"] = [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {
                        f"Value #{chr(ord('A') + i)}": legend
                        for i, (_, legend) in enumerate(panel.targets)
                    },
                },
            },
        ]
        rendered["fieldConfig"]["overrides"] = [
            {
                "matcher": {"id": "byName", "options": legend},
                "properties": [
                    {"id": "unit", "value": "none" if legend in ("ratio", "paused") else panel.unit}
                ],
            }
            for _, legend in panel.targets
        ]
    return rendered


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    x = y = 0
    row_height = 0
    for number, panel in enumerate(dashboard.panels, start=1):
        height = 4 if panel.kind == "stat" else 9 if panel.kind == "table" else 8
        if x + panel.width > 24:
            x, y = 0, y + row_height
            row_height = 0
        panels.append(_panel(number, panel, x, y, height))
        x += panel.width
        row_height = max(row_height, height)
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": _variables() if dashboard.variables else []},
        "annotations": {"list": []},
        "panels": panels,
    }


def resolve(expr: str) -> str:
    """``expr`` as Grafana sends it with "All" chosen for every variable."""
    return expr.replace("$queue", ALL).replace("$actor", ALL)


def expressions() -> list[str]:
    """Every PromQL expression of every dashboard, variables resolved to "All"."""
    return [resolve(expr) for d in DASHBOARDS for p in d.panels for expr, _ in p.targets]


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
