"""A broker outage as the operator sees it: a readable, bounded log; a scheduler that waits.

Real ``dramatiq bgworkers`` and ``periodiq bgworkers`` processes against a closed port. Each
runs until it logs its first ``broker_unreachable`` line (however long its start takes), then
for :data:`OBSERVE_S` more, in which it tries to connect again several times; the log is then
judged by what it says, not by timings.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

from bgworkers import migrations
from bgworkers.db.engine import make_engine
from tests.platform_helpers import free_port, stop_process, wait_for

BIN = Path(sys.executable).parent
#: Seconds a process may take to log its first line about the outage (a deadline).
START_S = 120
#: Seconds watched after that line: dramatiq's consumers retry every 3 s and the scheduler
#: after 1, 2, 4 and 8 s, all inside the 60-s interval of one line per condition.
OBSERVE_S = 12
FIRST_LINE = "broker_unreachable"


def outage_env(tmp_path: Path) -> dict[str, str]:
    engine = make_engine(f"sqlite:///{tmp_path}/bgworkers.db")
    migrations.upgrade(engine)
    engine.dispose()
    return {
        **os.environ,
        "BGW_DATA_DIR": str(tmp_path),
        "BGW_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        "BGW_METRICS_PORT": str(free_port()),
        "BGW_SCHEDULER_METRICS_PORT": str(free_port()),
        "BGW_LOG_FORMAT": "json",
    }


def run_for(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[list[str], bool]:
    """Run until the first outage line, then OBSERVE_S seconds more; return the output lines
    and whether it was still running."""
    out = cwd / "out.log"
    with out.open("wb") as sink:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        wait_for(
            lambda: process.poll() is not None or FIRST_LINE in out.read_text(errors="replace"),
            timeout_s=START_S,
            what="the first line about the outage",
        )
        observed_until = time.monotonic() + OBSERVE_S
        while process.poll() is None and time.monotonic() < observed_until:
            time.sleep(0.2)
        alive = process.poll() is None
        stop_process(process)
    return out.read_text().splitlines(), alive


def events(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_a_worker_without_rabbitmq_logs_one_line_per_condition_and_little_else(
    tmp_path: Path,
) -> None:
    lines, alive = run_for(
        [str(BIN / "dramatiq"), "bgworkers", "--processes", "1", "--threads", "1"],
        outage_env(tmp_path),
        tmp_path,
    )
    assert alive  # dramatiq's consumers keep retrying: the worker does not exit
    logged = events(lines)
    unreachable = [e for e in logged if e["event"] == "broker_unreachable"]
    assert len(unreachable) == 1, lines  # one per 60 s interval
    assert "RabbitMQ does not answer" in str(unreachable[0]["hint"])
    pika_lines = [e for e in logged if str(e.get("logger", "")).startswith("pika")]
    # Unfiltered: about 40 pika lines a second (~500 in this stretch); now each kind of line
    # (four or five templates) once per interval in each process that connects.
    assert len(pika_lines) <= 12, pika_lines
    assert not [line for line in lines if "Traceback" in line]
    assert len(lines) < 60, "\n".join(lines)


def test_the_scheduler_without_rabbitmq_keeps_retrying_instead_of_exiting(tmp_path: Path) -> None:
    lines, alive = run_for([str(BIN / "periodiq"), "bgworkers"], outage_env(tmp_path), tmp_path)
    text = "\n".join(lines)
    assert alive, text
    assert "gitlab.com" not in text and "Unhandled error" not in text
    retries = [e for e in events(lines) if e["event"] == "broker_unreachable"]
    assert len(retries) == 1, text  # several failed attempts, one line per interval
    assert "keeps retrying" in str(retries[0]["hint"])


def read_pty_until_outage_line(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    """What the process writes on a terminal, up to its first outage line (or its exit)."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + START_S
    os.set_blocking(primary, False)
    while FIRST_LINE.encode() not in b"".join(chunks):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {FIRST_LINE} line in {START_S} s: {b''.join(chunks)!r}")
        try:
            chunks.append(os.read(primary, 65536))
        except BlockingIOError:
            time.sleep(0.1)
        except OSError:  # the process closed the terminal
            break
    stop_process(process)
    os.close(primary)
    return b"".join(chunks).decode(errors="replace")


def test_console_format_on_a_terminal_json_otherwise_explicit_setting_wins(
    tmp_path: Path,
) -> None:
    env = outage_env(tmp_path)
    del env["BGW_LOG_FORMAT"]
    argv = [str(BIN / "dramatiq"), "bgworkers", "--processes", "1", "--threads", "1"]
    on_terminal = read_pty_until_outage_line(argv, env, tmp_path)
    readable = [line for line in on_terminal.splitlines() if "broker_unreachable" in line]
    assert readable and not readable[0].lstrip().startswith("{"), on_terminal
    forced = read_pty_until_outage_line(argv, {**env, "BGW_LOG_FORMAT": "json"}, tmp_path)
    as_json = [line for line in forced.splitlines() if "broker_unreachable" in line]
    assert as_json and as_json[0].lstrip().startswith("{"), forced
    piped, _ = run_for(argv, env, tmp_path)
    assert next(line for line in piped if "broker_unreachable" in line).startswith("{")
