"""First-day errors of the real commands: one line with the fix, an exit code, no traceback.

Each test runs ``bgworkers ...`` as a subprocess in a temporary directory (so nothing of the
repository's ``var/`` is touched) and asserts the line a newcomer reads.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bgworkers import migrations
from bgworkers.db.engine import make_engine
from tests.cli_helpers import BGWORKERS, assert_one_line, run_command
from tests.platform_helpers import free_port

DRAMATIQ = str(Path(sys.executable).parent / "dramatiq")


def test_unparseable_schedule_overrides_name_the_variable(tmp_path: Path) -> None:
    result = run_command("schedule", tmp_path=tmp_path, BGW_SCHEDULE_OVERRIDES="not json")
    assert_one_line(result, 2, "BGW_SCHEDULE_OVERRIDES", "not valid JSON")


def test_help_is_plain_text(tmp_path: Path) -> None:
    result = run_command("--help", tmp_path=tmp_path)
    assert result.returncode == 0
    assert "``" not in result.stdout and ":class:" not in result.stdout


def test_migrate_says_what_it_applied(tmp_path: Path) -> None:
    first = run_command("migrate", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "database schema migrated: applied" in first.stdout
    assert "0001_platform" in first.stdout
    second = run_command("migrate", tmp_path=tmp_path)
    assert "database schema is up to date (nothing to apply)" in second.stdout


def test_the_default_database_does_not_depend_on_the_working_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "BGW_DATABASE_URL"}
    env["BGW_DATA_DIR"] = str(data)
    for folder, command in (("one", "migrate"), ("two", "schedule")):
        result = subprocess.run(
            [BGWORKERS, command], env=env, cwd=tmp_path / folder, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert (data / "bgworkers.db").exists()
    assert not list((tmp_path / "one").iterdir()) and not list((tmp_path / "two").iterdir())


def closed_broker_url() -> str:
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/"


def test_schedule_before_migrate_says_run_migrate(tmp_path: Path) -> None:
    result = run_command("schedule", tmp_path=tmp_path)
    assert_one_line(result, 2, "no bgworkers schema yet", "run `bgworkers migrate`")


def test_schedule_on_an_outdated_schema_lists_what_is_pending(tmp_path: Path) -> None:
    assert run_command("migrate", tmp_path=tmp_path).returncode == 0
    engine = make_engine(f"sqlite:///{tmp_path}/data/bgworkers.db")
    migrations.downgrade("0004_sync", engine)  # the Notion branch's last revision is undone
    engine.dispose()
    result = run_command("schedule", tmp_path=tmp_path)
    assert_one_line(result, 2, "outdated", "0006_notion_generation", "run `bgworkers migrate`")


def test_queues_before_migrate_names_the_fix_for_the_rate_limits(tmp_path: Path) -> None:
    result = run_command("queues", tmp_path=tmp_path)
    assert "Traceback" not in result.stdout + result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("rate limits:")]
    assert "no bgworkers schema yet" in line and "run `bgworkers migrate`" in line, line
    assert "ProgrammingError" not in line and "OperationalError" not in line


def test_health_before_migrate_says_why_without_a_traceback(tmp_path: Path) -> None:
    result = run_command("health", tmp_path=tmp_path, BGW_BROKER_URL=closed_broker_url())
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 1
    assert "database: the database has no bgworkers schema yet" in result.stdout
    assert "run `bgworkers migrate`" in result.stdout
    assert "rabbitmq: RabbitMQ does not answer" in result.stdout


def test_migrate_against_an_unreachable_database(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres:secret@127.0.0.1:{free_port()}/bgworkers"
    result = run_command("migrate", tmp_path=tmp_path, BGW_DATABASE_URL=url)
    line = assert_one_line(result, 3, "the database does not answer", "BGW_DATABASE_URL")
    assert "secret" not in line


def test_run_against_an_unreachable_broker(tmp_path: Path) -> None:
    result = run_command("run", tmp_path=tmp_path, BGW_BROKER_URL=closed_broker_url())
    assert_one_line(result, 3, "RabbitMQ does not answer", "connection refused", "BGW_BROKER_URL")


UNREACHABLE_SERVICE = [
    (("send", "prune_dead_letters"), "broker", "RabbitMQ does not answer"),
    (("jobs", "run", "prune_dead_letters"), "broker", "RabbitMQ does not answer"),
    (("queues",), "broker", "RabbitMQ does not answer"),
    (("dead", "list"), "database", "the database did not answer"),
    (("schedule",), "database", "the database does not answer"),
]


@pytest.mark.parametrize(("args", "service", "words"), UNREACHABLE_SERVICE)
def test_every_command_gives_one_exit_code_for_a_service_that_does_not_answer(
    tmp_path: Path, args: tuple[str, ...], service: str, words: str
) -> None:
    """3, one line, whichever command and whichever service: a script can tell "try again
    later" from every other failure without knowing which command reached what (``backup``:
    tests/files/test_backup_command.py)."""
    env = {"BGW_LOG_FORMAT": "json"}
    if service == "broker":
        env["BGW_BROKER_URL"] = closed_broker_url()
        assert run_command("migrate", tmp_path=tmp_path).returncode == 0
    else:
        env["BGW_DATABASE_URL"] = (
            f"postgresql+psycopg://postgres:secret@127.0.0.1:{free_port()}/bgworkers"
        )
    result = run_command(*args, tmp_path=tmp_path, **env)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 3, output
    [line] = [line for line in result.stderr.splitlines() if line.startswith("bgworkers")]
    assert words in line and "secret" not in line, line


def test_a_closed_pipe_ends_health_quietly(tmp_path: Path) -> None:
    env = {**os.environ, "BGW_DATA_DIR": str(tmp_path), "BGW_BROKER_URL": closed_broker_url()}
    result = subprocess.run(
        ["bash", "-c", f"'{BGWORKERS}' health | head -1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.startswith("rabbitmq")
    assert result.stderr == ""


def test_ctrl_c_during_start_up_is_one_line(tmp_path: Path) -> None:
    # A broker that accepts the TCP connection and never answers: the start-up probe waits.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    url = f"amqp://guest:guest@127.0.0.1:{silent.getsockname()[1]}/"
    env = {**os.environ, "BGW_DATA_DIR": str(tmp_path), "BGW_BROKER_URL": url}
    process = subprocess.Popen(
        [BGWORKERS, "run"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        silent.settimeout(60)
        connection, _ = silent.accept()  # the command is now inside its start-up probe
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        silent.close()
    connection.close()
    assert "Traceback" not in (out + err).decode()
    assert err.decode().strip() == "bgworkers: interrupted"
    assert process.returncode == 130


def test_workers_refuse_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BGW_DATA_DIR": str(tmp_path),
        "BGW_BROKER_URL": closed_broker_url(),
        "BGW_METRICS_PORT": str(free_port()),
    }
    result = subprocess.run(
        [DRAMATIQ, "bgworkers", "--processes", "1", "--threads", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.startswith("bgworkers:")]
    assert lines == [
        "bgworkers: worker not started: the database has no bgworkers schema yet "
        f"(SQLite file {tmp_path}/bgworkers.db); run `bgworkers migrate` first"
    ]
