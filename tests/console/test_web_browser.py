"""The web console in a real browser: Debian's chromium driven by Playwright.

The console runs in this process (uvicorn in a thread) on bgworkers' own broker and the real
PostgreSQL, next to an in-process worker; the browser logs in, sees a dead letter, requeues it
once the fake dependency works, and sees it processed. A wrong password is refused, and a POST
without the CSRF token changes nothing. Each page is saved as a screenshot: into
``BGW_CONSOLE_SCREENSHOTS`` when set (``docs/img`` regenerates the documentation's), else
into the test's temporary directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

import bgworkers
from bgworkers.console.audit import recent
from bgworkers.console.models import DeadLetter
from bgworkers.console.operations import Console
from bgworkers.console.web.app import WebConfig
from bgworkers.console.web.security import Credentials
from bgworkers.console.web.throttle import LoginThrottle, ThrottlePolicy
from bgworkers.db.engine import session_scope, utcnow
from bgworkers.maintenance.heartbeat import record_heartbeat
from bgworkers.scheduling.models import ScheduledRun
from bgworkers.settings import get_settings
from tests.console import fake_jobs
from tests.console.serving import serving
from tests.platform_helpers import IN_CI, wait_for

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")
USER, PASSWORD = "ops", "correct horse battery"


@pytest.fixture
def console_url(postgres_engine: Engine, app_broker) -> Iterator[str]:
    settings = get_settings()
    config = WebConfig(
        settings=settings,
        credentials=Credentials(user=USER, password=PASSWORD),
        no_auth=False,
        session_secret="test-only-session-secret",
        console_for=lambda who: Console(
            settings=settings, broker=bgworkers.broker, engine=postgres_engine, who=who
        ),
        # The default thresholds, with shorter delays (seconds) to keep the test short.
        throttle=LoginThrottle(ThrottlePolicy(first_delay_s=0.1, max_delay_s=0.4)),
    )
    with serving(config) as url:
        yield url


@pytest.fixture
def page(console_url: str) -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = "Debian's chromium is missing (deploy/ensure-chromium.sh installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        context.close()
        browser.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("BGW_CONSOLE_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def shoot(page: Any, shots: Path, name: str) -> None:
    path = shots / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000


def log_in(page: Any, url: str, password: str = PASSWORD) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=user]", USER)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def indexed(engine: Engine, message_id: str) -> bool:
    with Session(engine) as session:  # closed: an open transaction would block DROP SCHEMA
        return session.get(DeadLetter, message_id) is not None


def seed_runs() -> None:
    """Twenty heartbeat runs and a recent beat, so the pages have a chart and a live scheduler."""
    now = utcnow().replace(second=0, microsecond=0)
    with session_scope() as session:
        record_heartbeat(session=session, now=now, scheduled_at=now)
        for n in range(20):
            tick = now - timedelta(minutes=20 - n)
            session.add(
                ScheduledRun(
                    job="heartbeat",
                    tick=tick,
                    status="failed" if n == 13 else "succeeded",
                    message_id=f"seed-{n}",
                    cron="* * * * *",
                    attempts=1,
                    claimed_at=tick,
                    finished_at=tick,
                    duration_s=0.02 + (n % 7) * 0.011,
                )
            )


def test_log_in_see_a_dead_letter_requeue_it_and_see_it_processed(
    console_url: str, page: Any, app_worker, inbox, postgres_engine: Engine, shots: Path
) -> None:
    message = fake_jobs.deliver_note.send(note_id=42, text="weekly notes", password="hunter2")
    wait_for(lambda: indexed(postgres_engine, message.message_id), what="the dead letter")
    seed_runs()
    page.goto(console_url)
    assert page.url.endswith("/login")  # not logged in: sent to the login page
    shoot(page, shots, "login")
    log_in(page, console_url)
    page.wait_for_selector("text=logged in as web:ops")
    assert (
        page.locator("section", has_text="Recent failures").locator("text=deliver_note").count()
        == 1
    )
    shoot(page, shots, "overview")

    page.click("nav >> text=Dead letters")
    row = page.locator("tbody tr", has_text="deliver_note")
    assert row.count() == 1 and "inbox refused note 42" in row.inner_text()
    shoot(page, shots, "dead-letters")
    row.locator("a").first.click()
    page.wait_for_selector(f"text={message.message_id}")
    body = page.inner_text("main")
    assert "Traceback" in body and "PermanentError: inbox refused note 42" in body
    assert "hunter2" not in page.content()  # redacted in the index, so never rendered
    shoot(page, shots, "dead-letter")

    inbox.broken = False  # the fix
    page.click("button:text-is('Requeue')")
    page.wait_for_selector("text=1 requeued")
    wait_for(lambda: inbox.delivered == [42], what="the requeued note to be delivered")

    def shown_processed() -> bool:
        if "processed" in page.inner_text("dl.facts"):
            return True
        page.reload()
        return False

    wait_for(shown_processed, timeout_s=10, what="the dead letter shown as processed")
    assert "processed" in page.inner_text("dl.facts")
    assert inbox.delivered == [42]

    page.click("nav >> text=Jobs")
    heartbeat = page.locator("tr#heartbeat")
    assert heartbeat.locator("svg.chart rect").count() == 20
    heartbeat.locator("input[name=reason]").fill("maintenance window")
    heartbeat.locator("button:text-is('Pause')").click()
    page.wait_for_selector("text=heartbeat paused")
    assert "paused by web:ops: maintenance window" in page.locator("tr#heartbeat").inner_text()
    shoot(page, shots, "jobs")
    page.locator("tr#heartbeat").locator("button:text-is('Resume')").click()
    page.wait_for_selector("text=heartbeat resumed")

    page.click("nav >> text=Audit log")
    text = page.inner_text("table")
    for action in ("login", "requeue", "pause", "resume"):
        assert action in text
    assert "web:ops" in text
    shoot(page, shots, "audit")


def test_a_wrong_password_is_refused(console_url: str, page: Any) -> None:
    log_in(page, console_url, password="wrong horse")
    assert page.locator("[role=alert]").inner_text() == "wrong user, password or token"
    page.goto(f"{console_url}/dead")
    assert page.url.endswith("/login")
    response = page.request.get(f"{console_url}/jobs", max_redirects=0)
    assert response.status == 303


def test_repeated_wrong_passwords_slow_down_then_lock_the_name_out(
    console_url: str, page: Any, postgres_engine: Engine, shots: Path
) -> None:
    refusals = []
    for _ in range(ThrottlePolicy().lock_after):
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            log_in(page, console_url, password="wrong horse")
        refusals.append(answer.value.status)
    assert refusals == [401] * ThrottlePolicy().lock_after
    # Locked now: even the right password is not checked.
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        log_in(page, console_url)
    assert answer.value.status == 429
    assert 1 <= int(answer.value.headers["retry-after"]) <= 60
    assert "too many failed logins" in page.inner_text("main")
    shoot(page, shots, "login-throttled")
    page.goto(f"{console_url}/dead")
    assert page.url.endswith("/login")  # no session was opened
    with Session(postgres_engine) as session:
        actions = [row.action for row in recent(session)]
    assert actions.count("login_failed") == ThrottlePolicy().lock_after
    assert actions.count("login_throttled") == 1


def test_a_post_without_the_csrf_token_is_refused(
    console_url: str, page: Any, app_worker, postgres_engine: Engine
) -> None:
    message = fake_jobs.deliver_note.send(note_id=5)
    wait_for(lambda: indexed(postgres_engine, message.message_id), what="the dead letter")
    log_in(page, console_url)
    page.wait_for_selector("text=logged in as web:ops")
    form = {"id": message.message_id, "confirm": "yes"}
    for path in ("/dead/requeue", "/dead/purge", "/jobs/heartbeat/pause", "/logout"):
        refused = page.request.post(f"{console_url}{path}", form=form | {"reason": "x"})
        assert refused.status == 403, path
        wrong = page.request.post(f"{console_url}{path}", form=form | {"csrf": "guess"})
        assert wrong.status == 403, path
    with Session(postgres_engine) as session:
        row = session.get(DeadLetter, message.message_id)
        assert row is not None and row.status == "dead"  # nothing happened
    page.goto(f"{console_url}/jobs")
    assert "paused by" not in page.inner_text("main")
    response = page.request.get(f"{console_url}/")
    headers = response.headers
    assert "script-src" not in headers["content-security-policy"]  # no script allowed at all
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_a_dead_letter_and_a_job_run_show_each_attempt_and_the_trace_id(
    console_url: str, page: Any, app_worker, postgres_engine: Engine, shots: Path
) -> None:
    from tests.scheduling import probe_jobs  # declares the flaky probe job on the broker

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    message = fake_jobs.deliver_note.send_with_options(
        kwargs={"note_id": 8}, traceparent=f"00-{trace_id}-00f067aa0ba902b7-01"
    )
    wait_for(lambda: indexed(postgres_engine, message.message_id), what="the dead letter")
    log_in(page, console_url)
    page.wait_for_selector("text=logged in as web:ops")
    page.goto(f"{console_url}/dead")
    listed = page.locator("tr", has=page.locator(f"input[value='{message.message_id}']"))
    assert listed.locator("code.trace-id").inner_text() == trace_id
    page.goto(f"{console_url}/dead/{message.message_id}")
    assert page.inner_text("code.trace-id") == trace_id
    [attempt] = page.locator("table.timeline tbody tr").all()
    assert "dead" in attempt.inner_text() and "inbox refused note 8" in attempt.inner_text()

    probe_jobs.RUNS.clear()
    page.goto(f"{console_url}/jobs")
    page.locator("tr#probe_flaky").locator("button:text-is('Run now')").click()
    page.wait_for_selector("text=probe_flaky: manual run sent")

    def dead_lettered() -> bool:
        with Session(postgres_engine) as session:
            run = session.exec(select(ScheduledRun).where(ScheduledRun.job == "probe_flaky"))
            return any(r.status == "failed" for r in run)

    wait_for(dead_lettered, what="the flaky run dead-lettered after its retries")
    page.locator("tr#probe_flaky >> a:text-is('probe_flaky')").click()
    page.wait_for_selector("h1 >> text=Runs of")
    rows = page.locator("section.run table.timeline tbody tr")
    assert rows.count() == 3
    outcomes = [rows.nth(n).locator("td").nth(4).inner_text() for n in range(3)]
    assert outcomes == ["retried", "retried", "dead"]
    assert "TransientError: probe failure" in rows.nth(2).inner_text()
    shoot(page, shots, "job-runs")
