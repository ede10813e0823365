from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pika
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers.db.engine import utcnow
from bgworkers.maintenance.heartbeat import record_heartbeat
from bgworkers.monitoring.queue_depth import NOT_DECLARED, read_depths_amqp
from bgworkers.monitoring.report import depth_lines, print_health
from bgworkers.settings import load_settings

pytestmark = pytest.mark.integration


def test_health_report_for_a_person(
    rabbitmq_url: str, sqlite_engine: Engine, app_broker: object
) -> None:
    settings = load_settings(broker_url=rabbitmq_url)
    now = utcnow()
    out = io.StringIO()
    assert print_health(settings, out, now=now) == 1  # no heartbeat yet
    assert "no heartbeat recorded yet" in out.getvalue()

    with Session(sqlite_engine) as session:
        record_heartbeat(session=session, now=now, scheduled_at=now - timedelta(seconds=30))
        session.commit()
    out = io.StringIO()
    assert print_health(settings, out, now=now) == 0, out.getvalue()
    assert "last heartbeat tick 30 s ago" in out.getvalue()
    assert out.getvalue().rstrip().endswith("healthy")

    assert "outbox       ok       0 unpublished" in out.getvalue()

    out = io.StringIO()
    assert print_health(settings, out, now=now + timedelta(minutes=10)) == 1
    assert "STALE" in out.getvalue()


def test_health_report_shows_the_outbox_backlog(
    rabbitmq_url: str, sqlite_engine: Engine, app_broker: object
) -> None:
    from bgworkers.maintenance.actors import optimize_database
    from bgworkers.outbox import enqueue

    settings = load_settings(broker_url=rabbitmq_url)
    now = utcnow()
    with Session(sqlite_engine) as session:
        record_heartbeat(session=session, now=now, scheduled_at=now)
        enqueue(session, optimize_database)  # no relay runs: it stays unpublished
        session.commit()
    out = io.StringIO()
    print_health(settings, out, now=now + timedelta(seconds=5))
    assert "outbox       ok       1 unpublished, oldest due 5 s ago" in out.getvalue()
    out = io.StringIO()
    assert print_health(settings, out, now=now + timedelta(seconds=400)) == 1
    assert "outbox       BACKLOG  1 unpublished, oldest due 400 s ago" in out.getvalue()


def test_health_says_not_declared_for_a_queue_rabbitmq_does_not_have(rabbitmq_url: str) -> None:
    missing, empty = f"bgw_missing_{uuid.uuid4().hex[:8]}", f"bgw_empty_{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    channel = connection.channel()
    channel.queue_declare(empty)
    try:
        depths = read_depths_amqp(rabbitmq_url, [missing, empty])
    finally:
        channel.queue_delete(empty)
        connection.close()
    out = io.StringIO()
    assert depth_lines(depths, out) == []  # a fresh install is not unhealthy
    _, header, missing_row, empty_row = out.getvalue().splitlines()
    assert header.split() == ["queue", "ready", "delayed", "dead", "letters"]
    assert missing_row == f"{missing:<12} {NOT_DECLARED}"
    assert empty_row.split() == [empty, "0", "0", "0"]
