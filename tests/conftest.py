"""Shared fixtures: fresh metrics registry, databases (SQLite and real PostgreSQL), RabbitMQ.

Integration fixtures skip when their service does not answer, except under ``CI=true``, where
they fail: CI must prove the real paths, and a skipped integration test proves nothing. Any
skip at all under CI fails the run (see ``pytest_sessionfinish``).
"""

from __future__ import annotations

import os
from pathlib import Path

# The tests keep their files in the repository's var/ (as `make run` does), never in the
# user's data directory; set before bgworkers reads its settings.
os.environ.setdefault("BGW_DATA_DIR", str(Path(__file__).resolve().parents[1] / "var"))

import signal
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import dramatiq
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.engine import Engine

import bgworkers
from bgworkers import migrations
from bgworkers.db.engine import make_engine, use_engine
from bgworkers.logs.loggers import reset_logging
from bgworkers.metrics import use_registry
from bgworkers.settings import get_settings
from tests.platform_helpers import IN_CI

# A shell without job control starts a background command with SIGINT ignored, and every
# process it starts inherits that: the commands these tests stop with Ctrl-C would then never
# see it. Give the suite, and so its children, the default that a terminal gives.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The broker the app itself uses (BGW_BROKER_URL): integration tests drive bgworkers' own broker.
RABBITMQ_URL = get_settings().broker_url.get_secret_value()
POSTGRES_URL = os.environ.get(
    "BGW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def service_answers(url: str, default_port: int) -> bool:
    parsed = urlparse(url.replace("+psycopg", ""))
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def require_service(url: str, default_port: int, name: str) -> None:
    if service_answers(url, default_port):
        return
    message = f"{name} does not answer at {urlparse(url).hostname}:{urlparse(url).port}"
    if IN_CI:
        pytest.fail(f"{message}; integration tests must run in CI")
    pytest.skip(message)


#: Fixtures that reach a real service: a test using one (directly or through another fixture)
#: is an integration test, so ``make unit`` (``-m "not integration"``) needs no service.
SERVICE_FIXTURES = frozenset({"rabbitmq_url", "app_broker", "app_worker", "postgres_engine"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("db_engine") == "postgresql"
        if fixtures & SERVICE_FIXTURES or on_postgres:
            item.add_marker(pytest.mark.integration)


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if IN_CI and _skipped and exitstatus == 0:
        print(f"\nCI=true but {len(_skipped)} test(s) were skipped: {_skipped[:5]}")
        session.exitstatus = 1


@pytest.fixture(autouse=True)
def library_logging() -> Iterator[None]:
    """Each test starts with the process's logging as an application's: a command run in
    process (``main([...])``) sets up bgworkers' handler on the real stdout, which would
    otherwise print every later test's log lines (aiosmtpd's ``mail.log``) live."""
    yield
    reset_logging()


@pytest.fixture(autouse=True)
def registry() -> Iterator[CollectorRegistry]:
    """A fresh Prometheus registry for every test, so counts start at zero."""
    fresh = CollectorRegistry()
    use_registry(fresh)
    yield fresh


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path}/bgworkers.db")
    migrations.upgrade(engine)
    use_engine(engine)
    yield engine
    use_engine(None)
    engine.dispose()


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    """A migrated, empty schema of its own in the real PostgreSQL, dropped afterwards."""
    require_service(POSTGRES_URL, 5432, "PostgreSQL")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    # search_path in the URL (libpq's options), so that an engine built from this one's URL,
    # as the readiness probe builds its own, sees the same schema.
    separator = "&" if "?" in POSTGRES_URL else "?"
    engine = make_engine(f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}")
    engine.dispose()
    migrations.upgrade(engine)
    use_engine(engine)
    yield engine
    use_engine(None)
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_engine(request: pytest.FixtureRequest) -> Engine:
    """Runs the test once on SQLite and once on the real PostgreSQL."""
    name = "sqlite_engine" if request.param == "sqlite" else "postgres_engine"
    engine: Engine = request.getfixturevalue(name)
    return engine


@pytest.fixture
def rabbitmq_url() -> str:
    require_service(RABBITMQ_URL, 5672, "RabbitMQ")
    return RABBITMQ_URL


@pytest.fixture
def app_broker(rabbitmq_url: str) -> Iterator[dramatiq.Broker]:
    """bgworkers' own RabbitMQ broker with its queues purged before and after the test."""
    broker = bgworkers.broker
    # A connection an earlier test left cached (it used bgworkers.broker directly) may have
    # been closed by RabbitMQ while idle (missed heartbeats during a long test): start afresh.
    del broker.connection
    for queue in broker.get_declared_queues():
        broker.flush(queue)
    yield broker
    for queue in broker.get_declared_queues():
        broker.flush(queue)
    broker.close()
    # close() leaves this thread's closed connection cached; drop it so the next test's
    # first call opens a fresh one.
    del broker.connection


@pytest.fixture
def app_worker(app_broker: dramatiq.Broker) -> Iterator[dramatiq.Worker]:
    """An in-process worker consuming every bgworkers queue of the real RabbitMQ."""
    worker = dramatiq.Worker(app_broker, worker_timeout=100, worker_threads=4)
    worker.start()
    yield worker
    worker.stop()
