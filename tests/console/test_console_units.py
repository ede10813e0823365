"""The console's pure parts and its wiring on dramatiq's stub broker (no RabbitMQ needed)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import dramatiq
import pytest
from dramatiq import Message
from sqlalchemy.engine import Engine
from sqlmodel import select

from bgworkers import queues
from bgworkers.console import xq
from bgworkers.console.commands import parse_arguments
from bgworkers.console.dead_letters import (
    ARGUMENTS_MAX_CHARS,
    DEAD_MESSAGE_TTL_MS,
    REQUEUES_OPTION,
    Failure,
    error_summary,
    prune_dead_letters,
    record_dead_letter,
    summarise_arguments,
)
from bgworkers.console.jobs import RunView, duration_chart, is_manual_tick, manual_tick
from bgworkers.console.models import DeadLetter
from bgworkers.console.operations import SendRefused
from bgworkers.console.web.security import Credentials, check_startup, csrf_ok, is_loopback
from bgworkers.db.engine import session_scope
from bgworkers.errors import ConfigurationError, PermanentError
from bgworkers.scheduling.middleware import MANUAL_OPTION, TICK_OPTION
from bgworkers.scheduling.models import ScheduledRun
from bgworkers.scheduling.pauses import pause_job, paused_jobs, resume_job
from bgworkers.scheduling.periodic import CronPeriod
from bgworkers.scheduling.schedule import ScheduledJob
from tests.platform_helpers import running_worker, stub_broker

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def failure(message_id: str = "m1", *, at: datetime = T0, **options: object) -> Failure:
    try:
        raise PermanentError("smtp said no: token=abc123")
    except PermanentError as exc:
        error = exc
    return Failure(
        message_id=message_id,
        queue="email",
        actor="send_email",
        args=[],
        kwargs={"email_id": 5, "api_key": "k-123", "note": "x" * 1_000_000},
        options={"retries": 3, **options},
        reason="retries_exhausted",
        exception=error,
        at=at,
    )


def test_arguments_are_redacted_and_capped_whatever_their_size() -> None:
    text = summarise_arguments([], {"api_key": "k-123", "url": "https://u:pw@h/", "n": 1})
    assert json.loads(text)["kwargs"] == {"api_key": "***", "url": "https://u:***@h/", "n": 1}
    huge = summarise_arguments(["y" * 5_000_000], {"deep": [[[[[[[[1]]]]]]]]})
    # Cut somewhere (each logged/stored string is capped first, then the whole summary).
    assert len(huge) <= ARGUMENTS_MAX_CHARS and re.search(r"…\(\d+ (chars|bytes)\)", huge)


def test_error_summary_is_redacted_and_names_files_by_package_path() -> None:
    error, trace = error_summary(failure().exception, "x")
    assert error == "PermanentError: smtp said no: token=***"
    assert "abc123" not in trace and 'File "tests/console/test_console_units.py"' in trace
    assert error_summary(None, "skipped_failed") == ("skipped_failed", "")


def test_a_row_per_message_updated_when_dead_again_and_pruned_after_the_ttl(
    sqlite_engine: Engine,
) -> None:
    first_ms = int((T0 - timedelta(minutes=5)).timestamp() * 1000)
    with session_scope() as session:
        record_dead_letter(session, failure(bgw_first_failed_at=first_ms))
    with session_scope() as session:
        row = record_dead_letter(session, failure(at=T0 + timedelta(hours=1)))
    assert (row.dead_count, row.status, row.retries) == (2, "dead", 3)
    assert row.first_failed_at == T0 - timedelta(minutes=5)
    assert row.last_failed_at == T0 + timedelta(hours=1)
    assert "k-123" not in row.arguments and len(row.arguments) <= ARGUMENTS_MAX_CHARS
    ttl = timedelta(milliseconds=DEAD_MESSAGE_TTL_MS)
    with session_scope() as session:
        record_dead_letter(session, failure("old", at=T0 - ttl))
        assert prune_dead_letters(session, now=T0 + timedelta(hours=2)) == 1
    with session_scope() as session:
        assert [r.message_id for r in session.exec(select(DeadLetter))] == ["m1"]


def test_a_requeued_copy_starts_afresh_with_its_id() -> None:
    message = Message(
        queue_name="email.DQ",
        actor_name="send_email",
        args=(),
        kwargs={"email_id": 5},
        options={"retries": 4, "traceback": "...", "eta": 1, "bgw_tick": "t"},
        message_id="m1",
    )
    copy = xq.fresh_copy(message)
    assert (copy.queue_name, copy.message_id, copy.kwargs) == ("email", "m1", {"email_id": 5})
    assert copy.options == {"bgw_tick": "t", REQUEUES_OPTION: 1}
    assert xq.fresh_copy(copy).options[REQUEUES_OPTION] == 2
    assert xq.decode(message.encode()) == message
    too_deep = b"[" * 100_000 + b"]" * 100_000  # more nesting than the JSON parser takes
    for body in (b"not json", b"[1]", b'{"queue_name": 1}', json.dumps({"a": 1}).encode()):
        assert xq.decode(body) is None
    assert xq.decode(too_deep) is None


def test_send_arguments_are_json_or_text() -> None:
    assert parse_arguments(["n=5", "flag=true", "name=hello", "code=007", 'q="5"']) == {
        "n": 5,
        "flag": True,
        "name": "hello",
        "code": "007",
        "q": "5",
    }
    for bad in (["novalue"], ["=1"], ["a=1", "a=2"], ["bad-name=1"]):
        with pytest.raises(SendRefused):
            parse_arguments(bad)


def test_credentials_and_start_up_rules() -> None:
    both = Credentials(token="t0ken", user="ops", password="pw")
    assert both.check(user="ops", password="pw", token="") == "web:ops"
    assert both.check(user="", password="", token="t0ken") == "web:token"
    assert both.check(user="ops", password="PW", token="") is None
    assert both.check(user="ops", password="pw" + "x", token="wrong") is None
    assert Credentials(user="ops").check(user="ops", password="", token="") is None
    check_startup(both, host="0.0.0.0", no_auth=False)
    with pytest.raises(ConfigurationError, match="needs credentials"):
        check_startup(Credentials(user="ops"), host="127.0.0.1", no_auth=False)
    check_startup(Credentials(), host="127.0.0.1", no_auth=True)
    with pytest.raises(ConfigurationError, match="loopback"):
        check_startup(Credentials(), host="0.0.0.0", no_auth=True)
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("10.0.0.1")
    assert csrf_ok("abc", "abc") and not csrf_ok("abc", "abd") and not csrf_ok("", "")
    assert not csrf_ok(None, "abc") and not csrf_ok("abc", None)


def test_duration_chart_draws_one_bar_per_run_from_numbers_only() -> None:
    runs = [RunView(T0 + timedelta(minutes=n), "succeeded", 0.1 * n, False, None) for n in range(5)]
    runs.append(RunView(T0, "failed", None, True, "<script>"))
    svg = duration_chart(runs)
    assert svg.count("<rect") == 6 and "<script>" not in svg
    assert duration_chart([]) == ""


def test_manual_ticks_are_never_whole_minutes() -> None:
    assert is_manual_tick(manual_tick(T0)) and not is_manual_tick(T0)
    assert manual_tick(T0 + timedelta(seconds=3)) == T0 + timedelta(seconds=3)


def test_a_paused_job_is_skipped_by_the_guard_but_a_manual_run_runs(
    sqlite_engine: Engine, registry
) -> None:
    broker = stub_broker()
    ran: list[str] = []
    period = CronPeriod(ScheduledJob("pausable", "* * * * *", "test job"))

    @dramatiq.actor(broker=broker, queue_name=queues.MAINTENANCE, periodic=period)
    def pausable() -> None:
        ran.append("run")

    with session_scope() as session:
        assert pause_job(session, job="pausable", reason="why", who="cli:t", now=T0)
        assert not pause_job(session, job="pausable", reason="again", who="cli:t", now=T0)
    with running_worker(broker):
        pausable.send_with_options(scheduled_at=(T0 + timedelta(seconds=0.3)).isoformat())
        broker.join(queues.MAINTENANCE, timeout=10_000)
        assert ran == []
        stamp = manual_tick(T0 + timedelta(seconds=7)).isoformat()
        pausable.send_with_options(**{TICK_OPTION: stamp, MANUAL_OPTION: True})
        broker.join(queues.MAINTENANCE, timeout=10_000)
        assert ran == ["run"]
        with session_scope() as session:
            assert resume_job(session, job="pausable") and paused_jobs(session) == {}
        pausable.send_with_options(scheduled_at=(T0 + timedelta(minutes=1)).isoformat())
        broker.join(queues.MAINTENANCE, timeout=10_000)
    assert ran == ["run", "run"]
    skipped = registry.get_sample_value(
        "bgworkers_schedule_skipped_ticks_total", {"periodic_job": "pausable", "reason": "paused"}
    )
    assert skipped == 1
    with session_scope() as session:
        ticks = sorted(r.tick for r in session.exec(select(ScheduledRun)))
    assert ticks == [T0 + timedelta(seconds=7), T0 + timedelta(minutes=1)]  # not the paused one


def test_the_catch_up_job_leaves_paused_jobs_out(sqlite_engine: Engine) -> None:
    import bgworkers
    from bgworkers.db.engine import utcnow
    from bgworkers.scheduling.actors import catch_up_missed_ticks
    from bgworkers.scheduling.catch_up import CATCH_UP_JOB
    from bgworkers.scheduling.claims import job_state
    from bgworkers.scheduling.cron import floor_minute
    from bgworkers.scheduling.schedule import SCHEDULE

    # The job looks at the periodic actors declared on dramatiq's broker. A worker process
    # declares every domain's (the CLI loads bgworkers); run alone, this test would have
    # declared the catch-up job only, which then looks at no job at all.
    worker_broker = bgworkers.broker
    assert dramatiq.get_broker() is worker_broker
    now = floor_minute(utcnow())
    with session_scope() as session:
        job_state(session, CATCH_UP_JOB).checked_until = now - timedelta(minutes=10)
        pause_job(session, job="check_due_reminders", reason="outage", who="cli:t", now=now)
        for entry in SCHEDULE:  # paused too: no job would be re-sent (no broker needed)
            if entry.catch_up_window:
                pause_job(session, job=entry.actor_name, reason="test", who="cli:t", now=now)
    catch_up_missed_ticks.fn()  # the scheduler was "down" for ten minutes
    with session_scope() as session:
        missed = {
            job: job_state(session, job).missed_ticks
            for job in ("heartbeat", "check_due_reminders")
        }
    assert missed["heartbeat"] >= 9  # every-minute job, no window: counted as missed...
    assert missed["check_due_reminders"] == 0  # ...but not the paused one


def test_the_jobs_are_listed_in_declaration_order() -> None:
    """``bgworkers jobs``, the jobs page and the overview list the jobs in one order, the same
    in every process."""
    import bgworkers
    from bgworkers.scheduling.middleware import broker_periods

    broker = bgworkers.broker
    declared = [name for name, actor in broker.actors.items() if "periodic" in actor.options]
    assert len(declared) > 10
    assert [period.name for period in broker_periods(broker)] == declared


def test_bgworkers_schedule_shows_a_pause(sqlite_engine: Engine) -> None:
    import io

    from bgworkers.scheduling.report import print_schedule
    from bgworkers.settings import get_settings

    with session_scope() as session:
        pause_job(session, job="heartbeat", reason="db upgrade", who="cli:ops", now=T0)
    out = io.StringIO()
    print_schedule(get_settings(), out, now=T0)
    lines = {line.split()[0]: line for line in out.getvalue().splitlines()}
    assert lines["job"].split()[-1] == "paused"
    assert lines["heartbeat"].endswith("since 2026-11-25 09:00 UTC: db upgrade")
    assert lines["check_due_reminders"].endswith("-")


def test_attempt_rows_are_redacted_bounded_and_read_with_their_waits(
    sqlite_engine: Engine,
) -> None:
    from sqlmodel import Session

    from bgworkers.console.attempts import (
        MAX_ATTEMPTS_RECORDED,
        AttemptRecord,
        attempt_error,
        attempts_of,
        record_attempt,
        timeline,
        trace_id_of,
    )

    error = attempt_error(ConnectionError("amqp://app:s3cret@rabbit/ refused " + "x" * 900))
    assert "s3cret" not in error and len(error) <= 500
    assert error.startswith("ConnectionError: amqp://app:")
    start = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    with Session(sqlite_engine) as session:
        for n, outcome in ((1, "retried"), (2, "dead"), (MAX_ATTEMPTS_RECORDED + 1, "dead")):
            at = start + timedelta(seconds=3 * (n - 1))
            record_attempt(session, AttemptRecord("m-1", n, at, 0.5, outcome, error))
        session.commit()
        entries = timeline(attempts_of(session, "m-1"))
    assert [(e["attempt"], e["outcome"]) for e in entries] == [(1, "retried"), (2, "dead")]
    assert entries[0]["waited_s"] is None and entries[1]["waited_s"] == 2.5  # 3 s - 0.5 s run
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_id_of({"traceparent": traceparent}) == "4bf92f3577b34da6a3ce929d0e0e4736"
    for bad in ("", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "garbage", 7, "x" * 10_000):
        assert trace_id_of({"traceparent": bad}) == ""
    assert trace_id_of({}) == ""


def test_attempts_not_recorded_while_the_database_is_away_are_one_line_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bgworkers.console.middleware import DeadLetterIndex

    index = DeadLetterIndex()
    for _ in range(3):
        index._attempt_dropped(ConnectionRefusedError("connection refused"))
    said = [r for r in caplog.records if "attempt_not_recorded" in r.getMessage()]
    assert len(said) == 1 and index._attempts_dropped == 3


def test_json_is_kept_from_a_parent_command_and_off_by_default() -> None:
    from bgworkers.cli.admin import make_parser

    parser = make_parser()
    assert parser.parse_args(["jobs", "--json", "runs", "x"]).json is True
    assert parser.parse_args(["jobs", "runs", "x", "--json"]).json is True
    assert parser.parse_args(["jobs", "runs", "x"]).json is False
    assert parser.parse_args(["dead", "list"]).json is False


def test_since_takes_an_age_or_an_iso_time_on_the_command_line_and_the_page() -> None:
    from datetime import UTC, datetime, timedelta

    from bgworkers.console.dead_letters import parse_since
    from bgworkers.console.web.routes.dead_letters import _since

    before = datetime.now(UTC)
    two_hours_ago = parse_since("2h")
    assert before - timedelta(hours=2) <= two_hours_ago <= datetime.now(UTC) - timedelta(hours=2)
    assert parse_since("2026-12-01T10:00") == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="expected an age"):
        parse_since("yesterday")
    assert _since("90s") is not None and _since("2026-12-01T10:00") is not None
    assert _since("yesterday") is None and _since("") is None
