"""Importing bgworkers builds nothing; asking for its broker wires it and contacts nothing."""

import os
import pkgutil
import subprocess
import sys

import bgworkers


def test_import_opens_no_connection() -> None:
    env = {
        **os.environ,
        # Nothing listens on port 1; a connection attempt would fail or hang, not pass.
        "BGW_BROKER_URL": "amqp://guest:guest@127.0.0.1:1/",
        "BGW_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
    }
    code = (
        "import bgworkers, dramatiq;"
        "broker = bgworkers.broker;"
        "assert dramatiq.get_broker() is broker;"
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


#: Modules that declare actors, or import a module that does: importing them is an
#: application asking for those actors, so they make the broker (and only that).
DECLARE_ACTORS = frozenset(
    {
        "bgworkers.console.actors",
        "bgworkers.email.actors",
        "bgworkers.email.api",
        "bgworkers.files.actors",
        "bgworkers.maintenance.actors",
        "bgworkers.reminders.actors",
        "bgworkers.reminders.api",
        "bgworkers.reminders.firing",
        "bgworkers.reminders.giving_up",
        "bgworkers.reminders.summary_pages",
        "bgworkers.reminders.summary",
        "bgworkers.scheduling.actors",
        "bgworkers.sync.actors",
    }
)


def every_module() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.walk_packages(bgworkers.__path__, "bgworkers.")
        if ".migrations." not in m.name and not m.name.endswith("__main__")
    )


# In one fresh interpreter, module after module: the first import that builds a broker or
# starts a thread is named (a later one could only hide behind an earlier failure).
_IMPORT_EACH = r"""
import importlib, sys, threading
import dramatiq.broker
threads = threading.active_count()
for name in sys.argv[1:]:
    importlib.import_module(name)
    if dramatiq.broker.global_broker is not None:
        sys.exit(f"importing {name} installed a dramatiq broker")
    if threading.active_count() != threads:
        sys.exit(f"importing {name} started a thread")
print("imported")
"""


def test_importing_any_module_builds_no_broker_and_starts_no_thread() -> None:
    names = [name for name in every_module() if name not in DECLARE_ACTORS]
    assert "bgworkers.logs.redaction" in names and "bgworkers.brokers.rabbitmq" in names
    done = _run_application(_IMPORT_EACH.replace("sys.argv[1:]", repr(names)))
    assert done.returncode == 0, done.stderr


def test_a_module_that_declares_actors_makes_the_broker_and_nothing_else() -> None:
    code = (
        "import threading, dramatiq.broker as b; n = threading.active_count();"
        "import bgworkers.email.api;"
        "assert b.global_broker is not None and 'send_email' in b.global_broker.actors;"
        "assert threading.active_count() == n, 'a thread started';"
        "assert not b.global_broker.connections, 'connected at import'"
    )
    done = _run_application(code)
    assert done.returncode == 0, done.stderr


def test_the_list_of_modules_that_declare_actors_is_current() -> None:
    assert set(every_module()) >= DECLARE_ACTORS
