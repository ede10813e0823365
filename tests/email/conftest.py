"""A real SMTP server (aiosmtpd) for the email tests, with scripted refusals."""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest
from aiosmtpd.controller import Controller

import bgworkers
from bgworkers.email.smtp import SmtpMailer, use_mailer
from tests.email.helpers import ScriptedHandler, SmtpServer
from tests.platform_helpers import free_port


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    handler = ScriptedHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    server = SmtpServer(handler=handler, port=port)
    yield server
    for mailer in server.mailers:
        mailer.close()
    controller.stop()


@pytest.fixture
def app_mailer(smtp_server: SmtpServer) -> Iterator[SmtpMailer]:
    """The process's mailer (used by the actors) pointed at the test server."""
    mailer = smtp_server.mailer()
    use_mailer(mailer)
    yield mailer
    use_mailer(None)


@pytest.fixture
def fresh_broker_connection() -> None:
    """Drop this thread's RabbitMQ connection before ``app_broker`` purges the queues.

    ``app_broker`` closes the broker after each test but keeps the closed connection as
    this thread's, so the next test's purge would fail on it.
    """
    del bgworkers.broker.connection


@pytest.fixture
def rabbit_worker(fresh_broker_connection: None, app_worker: dramatiq.Worker) -> dramatiq.Worker:
    """``app_worker`` (real RabbitMQ, every queue), usable in several tests in a row."""
    return app_worker
