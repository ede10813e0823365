"""The monitoring layer against a real Prometheus scraping real worker and scheduler processes.

Every PromQL expression of the dashboards and alert rules is evaluated through Prometheus's
HTTP API while a workload runs, and must return data: a renamed metric or label, or a panel
reading a series nobody exports, fails here. Alert expressions are evaluated with their
comparisons turned into ``bool`` comparisons, so they return their operands' series whether or
not the alert would fire. Also: ``promtool check config``, ``check rules``, ``test rules`` and
``check metrics`` on the real exposition.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zoneinfo
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from tests.monitoring.ports import METRICS_PORTS, port_from
from tests.platform_helpers import IN_CI, smtp_server, wait_for
from tests.service_processes import Stack
from tools import grafana_dashboards as dashboards

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
BIN = Path(sys.executable).parent
COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(?!=)(?!\s*bool\b)\s*")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} not installed (Debian package 'prometheus')"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def alert_expressions() -> dict[str, str]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


def as_bool(expr: str) -> str:
    """``a > 3`` becomes ``a > bool 3``: the operands' series, whatever their values.

    Label matchers (inside braces) are left alone.
    """
    parts = re.split(r"(\{[^}]*\})", expr)
    return "".join(
        part if part.startswith("{") else COMPARISON.sub(lambda m: f"{m.group(1)} bool ", part)
        for part in parts
    )


def test_as_bool_rewrites_comparisons_only() -> None:
    assert as_bool('up{job="x"} == 0') == 'up{job="x"} == bool 0'
    assert as_bool("a > 1 and b >= 2") == "a > bool 1 and b >= bool 2"
    assert as_bool("x > bool 1") == "x > bool 1"
    assert as_bool('a{q!="dq"} > 0') == 'a{q!="dq"} > bool 0'


def test_promtool_checks_config_and_rule_tests() -> None:
    promtool = tool("promtool")
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        result = subprocess.run(
            [promtool, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_committed_dashboards_match_their_definitions(tmp_path: Path) -> None:
    for path in dashboards.write(tmp_path):
        committed = ROOT / "deploy" / "grafana" / "dashboards" / path.name
        assert committed.read_text() == path.read_text(), f"regenerate {path.name}"


@pytest.fixture
def stack(tmp_path: Path, rabbitmq_url: str) -> Iterator[Stack]:
    running = Stack(tmp_path)
    yield running
    running.stop()


#: An expression whose outermost operation is an aggregation (inside round/topk/clamp_min).
OUTER_AGGREGATION = re.compile(
    r"^(?:round\(|topk\(\d+,\s*|clamp_min\()*(sum|max|min|count|avg)\s*(?:by\s*\(([^)]*)\))?\s*\("
)


def grouping_labels(expr: str) -> set[str]:
    """Labels an expression's result must carry: its outermost aggregation's ``by (...)``
    (none for ``sum(...)``), else those of all its ``by (...)`` clauses."""
    outer = OUTER_AGGREGATION.match(expr)
    groups = [outer.group(2) or ""] if outer else re.findall(r"\bby\s*\(([^)]*)\)", expr)
    labels = {label.strip() for group in groups for label in group.split(",")}
    return labels - {"le", ""}  # histogram_quantile consumes "le"


def test_grouping_labels() -> None:
    expr = "histogram_quantile(0.9, sum by (actor, le) (rate(x[5m]))) / sum by (queue) (y)"
    assert grouping_labels(expr) == {"actor", "queue"}
    assert grouping_labels("sum(max by (queue) (x))") == set()
    assert grouping_labels("round(topk(10, sum by (periodic_job) (increase(x[1h]))))") == {
        "periodic_job"
    }


def lacks_data(port: int, expr: str) -> str | None:
    """Why ``expr`` shows nothing useful, or None when it returns labelled series."""
    result = query(port, expr)
    if not result:
        return "no data"
    for series in result:
        metric = series["metric"]  # type: ignore[index]
        empty = sorted(label for label in grouping_labels(expr) if not metric.get(label))
        if empty:
            return f"series without {empty}: {metric}"
    return None


def query(port: int, expr: str, *, at: float | None = None) -> list[object]:
    """``expr``'s instant vector, now or ``at`` (Unix seconds)."""
    params = {"query": expr} | ({} if at is None else {"time": f"{at:.3f}"})
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"Prometheus rejected {expr!r}: {error.read().decode()}") from None
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.fixture
def outside_world() -> Iterator[dict[str, str]]:
    """A real SMTP server (refusing one recipient) and local Google Calendar and Notion fakes."""
    from tests.email.helpers import ScriptedHandler
    from tests.sync.fakes import FakeGoogleCalendar, FakeNotion, serve_http

    smtp = ScriptedHandler()
    smtp.rcpt_replies.append("550 5.1.1 no such mailbox")
    google, notion = FakeGoogleCalendar(), FakeNotion()
    for n in range(30):
        google.put_event(f"ev{n}", summary=f"Event {n}")
    notion.put_page("Roadmap", edited=datetime.now(UTC) - timedelta(hours=1))
    with ExitStack() as stack:
        smtp_port = stack.enter_context(smtp_server(smtp, port=port_from(METRICS_PORTS)))
        google_url = stack.enter_context(serve_http(google))
        notion_url = stack.enter_context(serve_http(notion))
        yield {
            "BGW_SMTP_HOST": "127.0.0.1",
            "BGW_SMTP_PORT": str(smtp_port),
            "BGW_GOOGLE_API_BASE_URL": f"{google_url}/calendar/v3",
            "BGW_GOOGLE_TOKEN_URL": f"{google_url}/token",
            "BGW_GOOGLE_CLIENT_ID": google.client_id,
            "BGW_GOOGLE_CLIENT_SECRET": google.client_secret,
            "BGW_NOTION_API_BASE_URL": notion_url,
            "notion_token": notion.token,
        }


def test_every_dashboard_and_alert_expression_returns_data(
    stack: Stack, tmp_path: Path, rabbitmq_url: str, outside_world: dict[str, str]
) -> None:
    """Two worker groups (two targets) and a scheduler, a workload, one group restarted in
    the middle of it; then every expression has data, the counts equal what happened, every
    rule evaluates without error, and the alerts due fire once."""
    prometheus, promtool = tool("prometheus"), tool("promtool")
    group_ports = [port_from(METRICS_PORTS), port_from(METRICS_PORTS)]
    scheduler_port, prom_port = port_from(METRICS_PORTS), port_from(METRICS_PORTS)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BGW_BROKER_URL": rabbitmq_url,
        "BGW_DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
        "BGW_METRICS_DIR": str(tmp_path / "metrics"),
        "BGW_SCHEDULER_METRICS_PORT": str(scheduler_port),
        "BGW_RABBITMQ_MANAGEMENT_URL": "http://127.0.0.1:15672",
        "BGW_QUEUE_DEPTH_INTERVAL_S": "1",
        "BGW_TEMP_DIR": str(tmp_path / "tmp"),
        "BGW_BACKUP_DIR": str(tmp_path / "backups"),
        "TZ": "UTC",
        # Hourly instead of daily: some of its ticks always fall in the catch-up window (6 h)
        # of the simulated outage, whatever the time of day the test runs. OVERDUE_JOB: see
        # there.
        "BGW_SCHEDULE_OVERRIDES": json.dumps(
            {"cleanup_old_sessions": "0 * * * *", OVERDUE_JOB: weekly_away_from_today()}
        ),
        **{k: v for k, v in outside_world.items() if k.startswith("BGW_")},
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run([str(BIN / "bgworkers"), "migrate"], env=env, cwd=tmp_path, check=True)
    pretend_the_scheduler_was_down(env["BGW_DATABASE_URL"], days=2)
    succeeded_long_ago(env["BGW_DATABASE_URL"], OVERDUE_JOB)
    reminder_due_at = seed_domain_data(
        env["BGW_DATABASE_URL"], tmp_path / "tmp", notion_token=outside_world["notion_token"]
    )
    import bgworkers

    for queue in bgworkers.broker.get_declared_queues():
        bgworkers.broker.flush(queue)

    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / "alerts.yml")]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [f"127.0.0.1:{port_from(METRICS_PORTS)}"]}  # nobody: alerts stay local
    ]
    targets = {
        "bgworkers-workers": [f"127.0.0.1:{port}" for port in group_ports],
        "bgworkers-scheduler": [f"127.0.0.1:{scheduler_port}"],
    }
    for job in config["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    stack.start(
        "prometheus",
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        env,
    )

    def start_group(number: int) -> subprocess.Popen[bytes]:
        return stack.start(
            f"worker{number}",
            [str(BIN / "dramatiq"), "bgworkers", "tests.monitoring.workload", "-p", "1", "-t", "2"],
            {**env, "BGW_METRICS_PORT": str(group_ports[number])},
        )

    groups = [start_group(0), start_group(1)]

    def value(expr: str) -> float | None:
        try:
            result = query(prom_port, expr)
        except (OSError, RuntimeError):  # Prometheus not listening, or not ready, yet
            return None
        return float(result[0]["value"][1]) if result else None  # type: ignore[index]

    # The outage's missed ticks must be a step from 0 that Prometheus sees: both groups'
    # counters are scraped at 0 before the scheduler (and so the catch-up job) starts.
    jobs = len(bgworkers.scheduling.schedule.SCHEDULE)
    wait_for(
        lambda: value("count(bgworkers_schedule_missed_ticks_total)") == 2 * jobs,
        timeout_s=90,
        what="both groups' counters scraped at 0",
    )
    stack.start("scheduler", [str(BIN / "periodiq"), "bgworkers"], env)

    run_workload(rabbitmq_url)
    run_domain_jobs(env["BGW_DATABASE_URL"], reminder_due_at)
    wait_for(
        lambda: value('sum(bgworkers_messages_retried_total{actor="monitoring_flaky"})') == 5,
        timeout_s=60,
        what="the workers to process the workload",
    )
    for port in group_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            check = subprocess.run(
                [promtool, "check", "metrics"], input=response.read(), capture_output=True
            )
        assert check.returncode == 0, check.stdout + check.stderr

    # The outage makes BgworkersMissedTicks fire (it has no 'for'), once per job.
    wait_for(
        lambda: bool(firing(prom_port, "BgworkersMissedTicks")),
        timeout_s=60,
        what="BgworkersMissedTicks to fire after the scheduler outage",
    )

    # Restart one group mid-run: its counters start again from 0 (a reset for Prometheus).
    # What a process counts after its last scrape is lost with it (Prometheus's semantics, in
    # production too), so the group is stopped when it is idle and Prometheus holds its counts.
    restarted = f'instance="127.0.0.1:{group_ports[0]}"'
    idle_since = time.time()
    from bgworkers.db.engine import make_engine

    database = make_engine(env["BGW_DATABASE_URL"])
    wait_for(
        lambda: stopped_counting(group_ports[0], prom_port, restarted, database),
        timeout_s=60,
        what="group 0 idle, with every count it holds scraped",
    )
    database.dispose()
    print(f"group 0 idle and scraped after {time.time() - idle_since:.1f} s")
    restarted_at = time.time()
    groups[0].send_signal(signal.SIGTERM)
    groups[0].wait(timeout=60)
    groups[0] = start_group(0)
    wait_for(
        lambda: (
            value(f"count(bgworkers_messages_processed_total{{{restarted}}})") is not None
            and value(f"up{{{restarted}}}") == 1
        ),
        timeout_s=90,
        what="the restarted group to be scraped again",
    )
    run_workload(rabbitmq_url, rounds=3)
    retries = 'round(sum(increase(bgworkers_messages_retried_total{actor="monitoring_flaky"}[1h])))'
    wait_for(
        lambda: value(retries) == 8, timeout_s=60, what="both rounds' retries, across the restart"
    )
    print(f"group 0 restarted {time.time() - restarted_at:.0f} s before the checks")

    expressions = {f"dashboard: {e}": e for e in dashboards.expressions()}
    # An alert's own expression, its comparisons made ``bool`` so that it shows its series
    # whatever their values; but ``unless`` would then drop every series its right side
    # has, whatever its value: such an alert is evaluated as written, on series prepared to
    # make it true (the overdue job).
    expressions |= {
        f"alert {name}": e if " unless " in e else as_bool(e)
        for name, e in alert_expressions().items()
    }
    missing: list[str] = []

    def all_return_data() -> bool:
        missing[:] = [
            f"{label}: {why}"
            for label, expr in expressions.items()
            if (why := lacks_data(prom_port, expr)) is not None
        ]
        return not missing

    try:
        wait_for(all_return_data, timeout_s=120, what="every expression to return data")
    except AssertionError:
        pytest.fail("expressions without data:\n" + "\n".join(missing))
    crowded = {
        expr: len(query(prom_port, expr))
        for expr in dashboards.expressions()
        if len(query(prom_port, expr)) > 20
    }
    assert crowded == {}, "panels with more than 20 series"

    mismatches: list[str] = []
    readings: dict[str, tuple[float, float]] = {}

    def counts_match() -> bool:
        truth = ground_truth(env["BGW_DATABASE_URL"], tmp_path)
        mismatches[:] = []
        for name, (title, index, labels) in COUNTED.items():
            at = time.time()  # the panel and its extrapolation bound on the same samples
            got = panel_value(prom_port, title, index, labels, at=at)
            most = truth[name] + extrapolation_allowance(prom_port, title, index, truth[name], at)
            readings[name] = (got, most)
            if not truth[name] <= got <= most:
                mismatches.append(
                    f"{name} ({title!r}): dashboard {got}, ground truth {truth[name]}"
                    f" (at most {most:.2f} with increase()'s extrapolation)"
                )
        return not mismatches

    try:
        wait_for(counts_match, timeout_s=60, what="dashboard counts to equal ground truth")
    except AssertionError:
        pytest.fail("counts that differ from what happened:\n" + "\n".join(mismatches))
    truth = ground_truth(env["BGW_DATABASE_URL"], tmp_path)
    print("ground truth, equal on the dashboards:", truth)
    print("dashboard readings (value, most allowed):", readings)
    assert truth["emails sent"] >= 1 and truth["missed ticks"] >= 1 and truth["reminders fired"]
    assert truth["maintenance dead-lettered"] == 2  # one per workload round

    rules = rule_health(prom_port)
    assert rules and all(health == "ok" for health in rules.values()), rules
    missed = firing(prom_port, "BgworkersMissedTicks")
    assert len({labels["periodic_job"] for labels in missed}) == len(missed) > 0, missed
    # BgworkersDeadLetters waits 5 minutes before firing: pending, once, for its one queue,
    # though both groups export the queue's depth.
    pending = firing(prom_port, "BgworkersDeadLetters", state="pending|firing")
    assert [labels["queue"] for labels in pending] == ["maintenance"], pending


#: The counts a group exposes: every ``bgworkers_*_total`` but the ``*_seconds_total``
#: ones, which run on by themselves (the group's CPU time).
COUNTS = r'__name__=~"bgworkers_.+_total", __name__!~".+_seconds_total"'


def exposed_counts(port: int) -> dict[str, float]:
    """Each of :data:`COUNTS`, summed over its series, as a group exposes it now."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if re.fullmatch(r"bgworkers_.+_total", sample.name) and not sample.name.endswith(
                "_seconds_total"
            ):
                counts[sample.name] = counts.get(sample.name, 0.0) + sample.value
    return counts


def stopped_counting(port: int, prom_port: int, instance: str, database: Engine) -> bool:
    """True when Prometheus's last scrape of the group at ``port`` (its ``instance`` label)
    holds every count the group exposes now, and no scheduled run is in progress (a run that
    ends later would be counted after the stop, and lost)."""
    from sqlalchemy import text

    with database.connect() as conn:
        running = conn.execute(
            text("SELECT count(*) FROM scheduled_runs WHERE status = 'running'")
        ).scalar_one()
    scraped = {
        series["metric"]["__name__"]: float(series["value"][1])  # type: ignore[index]
        for series in query(prom_port, f"sum by (__name__) ({{{COUNTS}, {instance}}})")
    }
    return running == 0 and scraped == exposed_counts(port)


def firing(port: int, alert: str, *, state: str = "firing") -> list[dict[str, str]]:
    """Labels of each instance of ``alert`` in ``state`` (a regex), without Prometheus's own."""
    result = query(port, f'ALERTS{{alertname="{alert}", alertstate=~"{state}"}}')
    return [
        {k: v for k, v in series["metric"].items() if k not in ("__name__", "alertstate")}  # type: ignore[index]
        for series in result
    ]


def rule_health(port: int) -> dict[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=10) as response:
        groups = json.load(response)["data"]["groups"]
    return {
        rule["name"]: rule["health"] + (f": {rule['lastError']}" if rule.get("lastError") else "")
        for group in groups
        for rule in group["rules"]
    }


def panel_target(title: str, index: int = 0) -> str:
    """The expression of a dashboard panel's target, as Grafana sends it with "All" chosen."""
    for dashboard in dashboards.DASHBOARDS:
        for panel in dashboard.panels:
            if panel.title == title:
                return dashboards.resolve(panel.targets[index][0])
    raise KeyError(title)


#: Count panels checked against what happened: (panel title, target, series labels).
#: A panel must read at least the truth (increase() never reads below a counter's rise, and
#: each counter is scraped from 0) and at most the truth plus what increase() adds by
#: extrapolation (:func:`extrapolation_allowance`), rounded.
COUNTED = {
    "emails sent": ("Emails sent (24 h)", 0, {}),
    "emails sent in the hour": ("Emails sent and given up (1 h)", 0, {}),
    "emails given up": ("Emails given up (24 h)", 0, {}),
    "reminders fired": ("Reminders fired (24 h)", 0, {}),
    "summaries sent": ("Daily summaries (24 h)", 0, {}),
    "missed ticks": ("Missed ticks (24 h)", 0, {}),
    "sessions deleted": ("Expired sessions deleted (24 h)", 0, {}),
    "temp files removed": ("Temporary files removed (24 h)", 0, {"mode": "delete"}),
    "backups written": ("Backups by outcome (7 d)", 0, {"outcome": "written"}),
    "scheduled runs succeeded": ("Runs by outcome (1 h)", 0, {"outcome": "succeeded"}),
    "dead letters waiting": ("Dead letters waiting", 0, {}),
    "maintenance dead-lettered": (
        "Dead-lettered and skipped (1 h), by queue",
        0,
        {"queue": "maintenance"},
    ),
}


def panel_value(
    port: int, title: str, index: int, labels: dict[str, str], *, at: float | None = None
) -> float:
    result = query(port, panel_target(title, index), at=at)
    return sum(
        float(series["value"][1])  # type: ignore[index]
        for series in result
        if all(series["metric"].get(k) == v for k, v in labels.items())  # type: ignore[index]
    )


INCREASE = re.compile(r"increase\((?P<selector>[^\[]+)\[(?P<range>\w+)\]\)")


def extrapolation_allowance(port: int, title: str, index: int, truth: float, at: float) -> float:
    """How far above ``truth`` a count panel may read at ``at``: increase()'s extrapolation,
    plus the panel's rounding.

    Prometheus's increase() takes a series' last sample minus its first (counter resets
    added back), D, and stretches it over the gaps to the window's edges
    (promql/functions.go, ``extrapolatedRate``). Towards the start it never goes past the
    counter's zero, so it adds at most the first sample's value: D plus that is the counter's
    whole count, at most the truth. Towards the end it stretches by the time to the edge when
    that is under 1.1 times the average interval between the samples, else by half that
    interval: at most D * 1.1 / (n - 1) for a series of n samples. The panel's sum so reads at
    most ``truth * 1.1 / (n - 1)`` above the truth, n the fewest samples of any series that
    rose: the shorter the run, the wider, as it should be.
    """
    expr = panel_target(title, index)
    found = INCREASE.search(expr)
    if found is None:
        return 0.0  # a gauge: read as it is
    window = f"{found['selector']}[{found['range']}]"
    rose = query(port, f"min(count_over_time({window}) and increase({window}) > 0)", at=at)
    rounding = 0.5 if expr.startswith("round(") else 0.0
    if not rose:
        return rounding
    samples = float(rose[0]["value"][1])  # type: ignore[index]
    return truth * 1.1 / (samples - 1) + rounding


def ground_truth(database_url: str, tmp_path: Path) -> dict[str, float]:
    """What the count panels must read, from the database, the files and RabbitMQ."""
    from sqlalchemy import text

    from bgworkers.db.engine import make_engine
    from bgworkers.monitoring.queue_depth import read_depths_amqp
    from bgworkers.settings import get_settings

    engine = make_engine(database_url)
    with engine.connect() as conn:

        def one(sql: str) -> float:
            return float(conn.execute(text(sql)).scalar_one())

        truth = {
            "emails sent": one("SELECT count(*) FROM email_outbox WHERE status = 'sent'"),
            "emails given up": one("SELECT count(*) FROM email_outbox WHERE status = 'failed'"),
            "reminders fired": one("SELECT count(*) FROM reminders WHERE status = 'fired'"),
            "summaries sent": one("SELECT count(*) FROM daily_summaries"),
            "missed ticks": one("SELECT coalesce(sum(missed_ticks), 0) FROM scheduled_job_state"),
            "sessions deleted": 1 - one("SELECT count(*) FROM user_sessions"),
            "scheduled runs succeeded": one(
                # OVERDUE_JOB's one run is the prepared one, a month before the panel's hour.
                "SELECT count(*) FROM scheduled_runs WHERE status = 'succeeded'"
                f" AND job != '{OVERDUE_JOB}'"
            ),
        }
    engine.dispose()
    depths = read_depths_amqp(get_settings().broker_url.get_secret_value())
    truth["emails sent in the hour"] = truth["emails sent"]
    truth["dead letters waiting"] = sum(d.dead_letters for d in depths)
    truth["maintenance dead-lettered"] = next(
        d.dead_letters for d in depths if d.queue == "maintenance"
    )
    truth["temp files removed"] = 3 - len(list((tmp_path / "tmp").glob("upload-*.tmp")))
    truth["backups written"] = len([p for p in (tmp_path / "backups").rglob("*") if p.is_file()])
    return truth


#: A job whose last success the test puts 30 days back, on a weekly schedule (an override)
#: that never ticks while the test runs: BgworkersJobOverdue's expression then has a series,
#: as for a real overdue job. Weekly, since the expected interval needs two ticks in 8 weeks.
OVERDUE_JOB = "prune_dead_letters"


def weekly_away_from_today() -> str:
    """Midnight (UTC) three days from today, every week: a cron line (Sunday written 7)."""
    return f"0 0 * * {(datetime.now(UTC).isoweekday() + 3) % 7 or 7}"


def succeeded_long_ago(database_url: str, job: str) -> None:
    from bgworkers.db.engine import make_engine, utcnow
    from tests.scheduling.recorded_runs import record_run

    engine = make_engine(database_url)
    record_run(
        job,
        utcnow().replace(second=0, microsecond=0) - timedelta(days=30),
        "succeeded",
        engine=engine,
    )
    engine.dispose()


def pretend_the_scheduler_was_down(database_url: str, *, days: int) -> None:
    """The catch-up job's bookmark says it last looked ``days`` ago: a real outage's state."""
    from sqlmodel import Session

    from bgworkers.db.engine import make_engine, utcnow
    from bgworkers.scheduling.catch_up import CATCH_UP_JOB
    from bgworkers.scheduling.models import ScheduledJobState

    engine = make_engine(database_url)
    with Session(engine) as session:
        since = utcnow().replace(second=0, microsecond=0) - timedelta(days=days)
        session.add(ScheduledJobState(job=CATCH_UP_JOB, checked_until=since))
        session.commit()
    engine.dispose()


def zone_at_morning(now: datetime) -> str:
    """An IANA zone where it is between 08:00 and 11:59 now (the daily summary's window)."""
    for name in sorted(zoneinfo.available_timezones()):
        if name.startswith(("Etc/", "posix/", "right/")):
            continue
        if 8 <= now.astimezone(zoneinfo.ZoneInfo(name)).hour < 12:
            return name
    raise AssertionError("no zone is at morning now")


def seed_domain_data(database_url: str, temp_dir: Path, *, notion_token: str) -> datetime:
    """One user with a calendar, Notion, an expired session, a reminder and old temp files."""
    from sqlmodel import Session

    from bgworkers.db.engine import make_engine, utcnow
    from bgworkers.reminders.api import create_reminder
    from bgworkers.sync.models import CalendarConnection, NotionConnection
    from bgworkers.users.models import User, UserSession

    now = utcnow()
    engine = make_engine(database_url)
    with Session(engine) as session:
        user = User(email="ada@example.org", display_name="Ada", timezone=zone_at_morning(now))
        session.add(user)
        session.flush()
        assert user.id is not None
        session.add(
            CalendarConnection(
                user_id=user.id, access_token="access-initial", refresh_token="refresh-initial"
            )
        )
        session.add(NotionConnection(user_id=user.id, access_token=notion_token))
        session.add(UserSession(id="expired", user_id=user.id, expires_at=now - timedelta(days=1)))
        due_at = now + timedelta(seconds=5)
        create_reminder(
            session=session, user_id=user.id, text="Water the plants", due_at=due_at, now=now
        )
        session.commit()
    engine.dispose()
    temp_dir.mkdir(parents=True, exist_ok=True)
    for n in range(3):
        old = temp_dir / f"upload-{n}.tmp"
        old.write_bytes(b"x" * 1024)
        os.utime(old, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    return due_at


def run_domain_jobs(database_url: str, reminder_due_at: datetime) -> None:
    """Each domain's periodic job, sent by hand as an operator would, and two emails."""
    from sqlmodel import Session

    from bgworkers.db.engine import make_engine
    from bgworkers.email.api import enqueue_email
    from bgworkers.files.actors import backup_user_data, cleanup_temp_files
    from bgworkers.maintenance.actors import cleanup_old_sessions, optimize_database
    from bgworkers.reminders.actors import check_due_reminders, send_daily_email_summary
    from bgworkers.sync.actors import sync_calendar_events, sync_notion_pages

    engine = make_engine(database_url)
    with Session(engine) as session:
        for n, recipient in enumerate(("refused@example.org", "grace@example.org")):
            enqueue_email(
                session=session,
                recipient=recipient,
                subject=f"Hello {n}",
                text="Hello",
                idempotency_key=f"monitoring-{n}",
            )
        session.commit()
    engine.dispose()
    for job in (
        send_daily_email_summary,
        cleanup_temp_files,
        backup_user_data,
        cleanup_old_sessions,
        optimize_database,
        sync_calendar_events,
        sync_notion_pages,
    ):
        job.send()
    due = reminder_due_at + timedelta(seconds=1)
    wait_for(lambda: datetime.now(UTC) > due, timeout_s=30, what="the reminder to be due")
    check_due_reminders.send()


def run_workload(rabbitmq_url: str, *, rounds: int = 5) -> None:
    """Real traffic: successes, a retry each, a dead letter, a duplicate tick."""
    from bgworkers.maintenance.actors import heartbeat
    from tests.monitoring import workload

    for i in range(rounds):
        heartbeat.send()
        workload.monitoring_flaky.send(f"k{rounds}-{i}")
    heartbeat.send("not an argument")  # InvalidArguments: dead-lettered at once
    # The same scheduled tick delivered twice (as two schedulers would): one run, one skip.
    tick = (datetime.now(UTC) - timedelta(minutes=rounds)).replace(second=0, microsecond=0)
    for _ in range(2):
        heartbeat.send_with_options(scheduled_at=tick.isoformat())
