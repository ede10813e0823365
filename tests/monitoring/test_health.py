from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from bgworkers.metrics.server import start_metrics_server
from bgworkers.monitoring.health import readiness_for
from bgworkers.settings import load_settings

pytestmark = pytest.mark.integration


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_ready_when_broker_and_database_answer(rabbitmq_url: str, sqlite_engine: Engine) -> None:
    settings = load_settings(broker_url=rabbitmq_url)
    server = start_metrics_server(CollectorRegistry(), "127.0.0.1", 0, readiness_for(settings))
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert get(f"{base}/healthz")[0] == 200
        status, body = get(f"{base}/readyz")
    finally:
        server.shutdown()
    assert status == 200
    assert json.loads(body)["checks"]["rabbitmq"]["ok"] is True
    assert json.loads(body)["checks"]["database"]["ok"] is True


def test_not_ready_says_which_check_failed(sqlite_engine: Engine) -> None:
    settings = load_settings(broker_url="amqp://guest:secret-pw@127.0.0.1:1/")
    server = start_metrics_server(CollectorRegistry(), "127.0.0.1", 0, readiness_for(settings))
    try:
        status, body = get(f"http://127.0.0.1:{server.server_port}/readyz")
    finally:
        server.shutdown()
    report = json.loads(body)
    assert status == 503
    assert report["ready"] is False
    assert report["checks"]["rabbitmq"]["ok"] is False
    assert report["checks"]["database"]["ok"] is True
    assert b"secret-pw" not in body
