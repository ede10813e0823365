"""One reminder's trace end to end: scheduler, workers, outbox, urgent lane, a retry, SMTP.

Real RabbitMQ, PostgreSQL and SMTP (aiosmtpd); the spans go over OTLP/HTTP to a receiver of
the test's own that decodes the protobuf payloads, as a collector would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers.db.engine import utcnow
from bgworkers.reminders.api import create_reminder
from bgworkers.users.models import User
from tests.email.helpers import ScriptedHandler
from tests.platform_helpers import smtp_server, wait_for
from tests.service_processes import Processes, process_env
from tests.tracing.otlp_receiver import ReceivedSpan, Receiver, serve, tree, waterfall_svg

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
#: Where the test writes the tree of the reminder's trace, and its waterfall as SVG
#: (docs/tracing.md shows both).
TREE_FILE = os.environ.get("BGW_TRACE_TREE_FILE")
SVG_FILE = os.environ.get("BGW_TRACE_SVG_FILE")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received = Receiver()
    server = serve(received)
    yield received
    server.shutdown()


@pytest.fixture
def smtp() -> Iterator[tuple[ScriptedHandler, int]]:
    handler = ScriptedHandler()
    with smtp_server(handler) as port:
        yield handler, port


@pytest.fixture
def system(
    tmp_path: Path,
    rabbitmq_url: str,
    postgres_engine: Engine,
    receiver: Receiver,
    smtp: tuple[ScriptedHandler, int],
) -> Iterator[Processes]:
    env = process_env(
        tmp_path,
        broker_url=rabbitmq_url,
        database_url=postgres_engine.url.render_as_string(hide_password=False),
        BGW_SMTP_PORT=str(smtp[1]),
        BGW_RETRY_MIN_BACKOFF_MS="200",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
        OTEL_BSP_SCHEDULE_DELAY="200",  # milliseconds between exports
    )
    processes = Processes(env, tmp_path)
    yield processes
    processes.stop_all()


def by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.span_id: span for span in spans}


def one(spans: list[ReceivedSpan], name: str, **attributes: object) -> ReceivedSpan:
    found = [
        s
        for s in spans
        if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (name, attributes, [s.name for s in spans])
    return found[0]


def trace_of(receiver: Receiver, actor: str) -> list[ReceivedSpan]:
    """Every span of the trace in which ``actor`` ran, or [] while none has."""
    spans = receiver.snapshot()
    ran = [
        s for s in spans if s.kind == "CONSUMER" and s.attributes.get("bgworkers.actor") == actor
    ]
    return [s for s in spans if ran and s.trace_id == ran[0].trace_id]


def test_a_reminders_trace_from_the_scheduler_tick_to_the_smtp_server(
    system: Processes,
    receiver: Receiver,
    smtp: tuple[ScriptedHandler, int],
    postgres_engine: Engine,
) -> None:
    handler, _ = smtp
    # Deferred twice: once in the reminder page's own delivery (handed to the urgent lane),
    # once in the urgent message's first attempt (retried by dramatiq).
    handler.data_replies.extend(["451 4.3.0 Try again later", "451 4.3.0 Try again later"])
    with Session(postgres_engine) as session:
        user = User(email="ada@example.org", display_name="Ada", timezone="UTC")
        session.add(user)
        session.flush()
        assert user.id is not None
        create_reminder(
            session=session,
            user_id=user.id,
            text="Call Bob",
            due_at=utcnow() + timedelta(seconds=1),
        )
        session.commit()
    system.start("worker", str(BIN / "dramatiq"), "bgworkers", "-p", "1", "-t", "2")
    system.start("scheduler", str(BIN / "periodiq"), "bgworkers")

    def delivered() -> bool:
        spans = trace_of(receiver, "send_urgent_email")
        return (
            sum(s.name == "smtp send" for s in spans) == 3
            and all(s.end_ns for s in spans)
            and any(
                s.attributes.get("bgworkers.outcome") == "succeeded"
                and s.attributes.get("bgworkers.actor") == "send_urgent_email"
                for s in spans
            )
        )

    # The scheduler ticks at the next minute boundary: at most ~60 s away.
    wait_for(delivered, timeout_s=150, what="the reminder's email delivered, traced")
    spans = trace_of(receiver, "send_urgent_email")
    if TREE_FILE:
        Path(TREE_FILE).write_text(tree(spans) + "\n")
    if SVG_FILE:
        Path(SVG_FILE).write_text(waterfall_svg(spans))
    ids = by_id(spans)

    tick = one(spans, "send reminders", **{"bgworkers.actor": "check_due_reminders"})
    assert (tick.kind, tick.service, tick.parent_id) == ("PRODUCER", "bgworkers-scheduler", "")
    assert "bgworkers.scheduled_at" in tick.attributes
    check = one(spans, "process reminders", **{"bgworkers.actor": "check_due_reminders"})
    assert (check.kind, check.service, check.parent_id) == (
        "CONSUMER",
        "bgworkers-worker",
        tick.span_id,
    )
    assert [link[1] for link in check.links] == [tick.span_id]
    assert check.attributes["bgworkers.outcome"] == "succeeded"

    create_page = one(spans, "create reminders", **{"bgworkers.actor": "fire_reminder_page"})
    assert (create_page.kind, create_page.parent_id) == ("PRODUCER", check.span_id)
    page = one(spans, "process reminders", **{"bgworkers.actor": "fire_reminder_page"})
    assert (page.kind, page.parent_id) == ("CONSUMER", create_page.span_id)
    assert page.attributes["bgworkers.outcome"] == "succeeded"

    create_email = one(spans, "create urgent", **{"bgworkers.actor": "send_urgent_email"})
    assert (create_email.kind, create_email.parent_id) == ("PRODUCER", page.span_id)
    first = one(spans, "process urgent", **{"bgworkers.retries": 0})
    second = one(spans, "process urgent", **{"bgworkers.retries": 1})
    for attempt in (first, second):
        assert (attempt.kind, attempt.parent_id) == ("CONSUMER", create_email.span_id)
        assert attempt.attributes["messaging.system"] == "rabbitmq"
        assert attempt.attributes["messaging.destination.name"] == "urgent"
    assert first.attributes["bgworkers.outcome"] == "retried"
    assert first.status == "ERROR" and "451" in first.status_message
    assert second.attributes["bgworkers.outcome"] == "succeeded" and second.status == "UNSET"
    assert {(link[1], link[2].get("kind")) for link in second.links} == {
        (create_email.span_id, "sender"),
        (first.span_id, "first_attempt"),
    }
    conversations = sorted((s for s in spans if s.name == "smtp send"), key=lambda s: s.start_ns)
    assert [ids[s.parent_id] for s in conversations] == [page, first, second]
    assert all(s.kind == "CLIENT" for s in conversations)
    assert [s.status for s in conversations] == ["ERROR", "ERROR", "UNSET"]
    assert conversations[2].attributes["server.address"] == "127.0.0.1"

    # The relay published each outbox message in a batch of its own trace, linked to it.
    relayed = [
        s
        for s in receiver.snapshot()
        if s.attributes.get("bgworkers.outbox") and s.name.startswith("send ")
    ]
    linked = {link[1] for s in relayed for link in s.links}
    assert {create_page.span_id, create_email.span_id} <= linked
    assert all(s.kind == "PRODUCER" and s.parent_id == "" for s in relayed)
    # No argument, address or error text with a secret in any attribute.
    for span in receiver.snapshot():
        text = repr(span.attributes)
        assert "ada@example.org" not in text and "Call Bob" not in text


APPLICATION = """
from opentelemetry import trace
from bgworkers.tracing import configure_tracing
from bgworkers.db.engine import session_scope
from bgworkers.email.api import enqueue_email

configure_tracing("application")
tracer = trace.get_tracer("application")
with tracer.start_as_current_span("POST /invitations", kind=trace.SpanKind.SERVER):
    with session_scope() as session:
        enqueue_email(
            session=session, recipient="bob@example.org", subject="Invitation",
            text="Hello Bob", idempotency_key="invitation-1",
        )
trace.get_tracer_provider().shutdown()
"""


def test_the_applications_request_is_the_root_of_its_emails_trace(
    system: Processes, receiver: Receiver, smtp: tuple[ScriptedHandler, int]
) -> None:
    system.start("worker", str(BIN / "dramatiq"), "bgworkers", "-p", "1", "-t", "2")
    subprocess.run(
        [sys.executable, "-c", APPLICATION], env=system.env, cwd=system.workdir, check=True
    )
    wait_for(
        lambda: any(s.name == "smtp send" for s in trace_of(receiver, "send_email")),
        timeout_s=60,
        what="the application's email delivered, traced",
    )
    spans = trace_of(receiver, "send_email")
    request = one(spans, "POST /invitations")
    assert (request.kind, request.service, request.parent_id) == ("SERVER", "application", "")
    create = one(spans, "create email")
    assert (create.kind, create.service, create.parent_id) == (
        "PRODUCER",
        "application",
        request.span_id,
    )
    process = one(spans, "process email")
    assert (process.service, process.parent_id) == ("bgworkers-worker", create.span_id)
    assert one(spans, "smtp send").parent_id == process.span_id
    assert smtp[0].received[0]["Subject"] == "Invitation"
