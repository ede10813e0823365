"""Importing bgworkers wires the broker and actors but contacts nothing."""

import os
import subprocess
import sys


def test_import_opens_no_connection() -> None:
    env = {
        **os.environ,
        # Nothing listens on port 1; a connection attempt would fail or hang, not pass.
        "BGW_BROKER_URL": "amqp://guest:guest@127.0.0.1:1/",
        "BGW_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
    }
    code = (
        "import bgworkers, dramatiq;"
        "assert dramatiq.get_broker() is bgworkers.broker;"
        "assert bgworkers.broker.actors, 'no actors declared';"
        "assert not bgworkers.broker.connections, 'connected at import'"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


# An application with logging of its own imports bgworkers the documented way.
_APPLICATION = r"""
import logging, sys, threading
logging.basicConfig(format="APP %(name)s %(message)s", level=logging.WARNING, stream=sys.stdout)
root = logging.getLogger()
before = (list(root.handlers), root.level, [h.formatter for h in root.handlers])
threads_before = {t.ident for t in threading.enumerate()}

import structlog
import bgworkers.email.api, bgworkers.reminders.api

assert (list(root.handlers), root.level, [h.formatter for h in root.handlers]) == before
assert {t.ident for t in threading.enumerate()} == threads_before, "import started a thread"
assert not structlog.is_configured(), "import configured structlog for the application"
from bgworkers.logs.loggers import get_logger
get_logger("bgworkers.probe").warning("probe_event", smtp_password="hunter2", count=3)
logging.getLogger("app").warning("app line")
"""


def _run_application(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "BGW_BROKER_URL": "amqp://guest:guest@127.0.0.1:1/", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_leaves_the_application_logging_alone() -> None:
    done = _run_application(_APPLICATION)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # bgworkers' events reach the application's own handler, in its format, secrets scrubbed.
    assert lines == [
        "APP bgworkers.probe event='probe_event' smtp_password='***' count=3",
        "APP app app line",
    ]
    assert done.stderr == ""


def test_bad_settings_raise_an_exception_the_application_can_catch() -> None:
    code = (
        "from bgworkers.errors import ConfigurationError\n"
        "try:\n"
        "    import bgworkers.email.api\n"
        "except ConfigurationError as error:\n"
        "    print('caught:', error)\n"
        "import bgworkers\n"
        "try:\n"
        "    bgworkers.broker\n"
        "except ConfigurationError:\n"
        "    print('broker: refused')\n"
    )
    done = _run_application(code, BGW_LOG_LEVEL="LOUD")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "caught: invalid configuration: BGW_LOG_LEVEL: Input should be 'DEBUG', 'INFO', "
        "'WARNING', 'ERROR' or 'CRITICAL'",
        "broker: refused",
    ]


def test_a_bad_schedule_override_is_a_configuration_error_too() -> None:
    code = (
        "from bgworkers.errors import ConfigurationError\n"
        "try:\n"
        "    import bgworkers.email.api\n"
        "except ConfigurationError as error:\n"
        "    print(error)\n"
    )
    done = _run_application(code, BGW_SCHEDULE_OVERRIDES='{"nope": "off"}')
    assert done.returncode == 0, done.stderr
    assert "BGW_SCHEDULE_OVERRIDES: 'nope' is not in the schedule table" in done.stdout


def test_operator_commands_are_told_apart_from_applications() -> None:
    from bgworkers.processes.boot import operator_command

    assert operator_command(["/srv/venv/bin/dramatiq", "bgworkers"]) == "dramatiq"
    assert operator_command(["/usr/lib/python3/dramatiq/__main__.py"]) == "dramatiq"
    assert operator_command(["/srv/venv/bin/periodiq", "bgworkers"]) == "periodiq"
    assert operator_command(["/srv/venv/bin/bgworkers", "health"]) == "bgworkers"
    assert operator_command(["/srv/app/manage.py", "runserver"]) is None
    assert operator_command(["/srv/app/__main__.py"]) is None
    assert operator_command([]) is None
