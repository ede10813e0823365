"""Build the broker with bgworkers' middleware stack: the composition root.

Order matters: dramatiq runs ``before_*`` hooks in list order and ``after_*`` hooks in
reverse. Logging comes first so every later hook logs with the message's context; the retry
policy is the last middleware with message hooks, so its decision (retry or dead-letter) is
made before the logging and metrics middleware report the outcome. The connectivity check
and the worker-process boot, added after it on the RabbitMQ broker, have no message hooks.

Why here, above every other package: the stack names middleware of many packages (outbox,
scheduling, console, processes); the broker class (:mod:`bgworkers.brokers.rabbitmq`) and
the packages whose middleware it holds stay free of each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)

from bgworkers.brokers.rabbitmq import ScreeningRabbitmqBroker, StackStubBroker
from bgworkers.console.middleware import DeadLetterIndex
from bgworkers.middleware.connectivity import BrokerConnectivityCheck
from bgworkers.middleware.exporter import GroupExporter
from bgworkers.middleware.message_logging import MessageLogging
from bgworkers.middleware.metrics import MessageMetrics
from bgworkers.middleware.parent_death import StopWithParent
from bgworkers.middleware.queue_gate import QueueArgumentsGate
from bgworkers.middleware.resources import CloseResources
from bgworkers.middleware.retry_policy import RetryPolicy
from bgworkers.middleware.schema_gate import SchemaGate
from bgworkers.outbox.middleware import OutboxRelay
from bgworkers.processes.boot import WorkerProcessBoot
from bgworkers.scheduling.middleware import ScheduleGuard
from bgworkers.settings import Settings, broker_urls
from bgworkers.stack.known_series import initialise_from_settings
from bgworkers.tracing.config import require_extra, tracing_on

if TYPE_CHECKING:
    from bgworkers.metrics.server import MetricsServer


def middleware_stack(settings: Settings) -> list[Middleware]:
    return [
        *tracing_middleware(),  # first: its spans enclose every other hook of a message
        MessageLogging(),
        MessageMetrics(initialise=initialise_from_settings),
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        CurrentMessage(),
        ScheduleGuard(),  # in place of periodiq's middleware: see bgworkers.scheduling
        OutboxRelay(settings),  # before CloseResources: its thread stops before the engine closes
        CloseResources(),
        DeadLetterIndex(),  # just before the retry policy: its after-hooks see the decision
        RetryPolicy(
            max_retries=settings.retry_max_retries,
            min_backoff_ms=settings.retry_min_backoff_ms,
            max_backoff_ms=settings.retry_max_backoff_ms,
        ),
    ]


def build_broker(settings: Settings, *, worker_process: bool = False) -> ScreeningRabbitmqBroker:
    """A RabbitMQ broker with publisher confirms; connects lazily, on first use.

    Several ``;``-separated URLs are several nodes of one cluster, tried in order.
    ``worker_process``: the broker of a process run by dramatiq's or periodiq's CLI (see
    :mod:`bgworkers.brokers.wiring`), which also gets the middleware with process hooks: only
    such a process sets up its own logging, dies with its parent, checks the schema and the
    queues at boot and may serve the group's metrics. An application's broker, or one a test
    builds and boots in-process, has none of them.
    """
    if worker_process:
        require_extra()  # bgworkers' own processes: a missing extra is one line and exit 2
    url = settings.broker_url.get_secret_value()
    # confirm_delivery: without it a publish that RabbitMQ drops is lost silently.
    broker = ScreeningRabbitmqBroker(
        url=broker_urls(url),
        confirm_delivery=True,
        queue_type=settings.queue_type,
        delivery_limit=settings.queue_delivery_limit,
        middleware=middleware_stack(settings),
        message_max_bytes=settings.message_max_bytes,
    )
    broker.add_middleware(BrokerConnectivityCheck(url=url))
    if not worker_process:
        return broker
    # Only the RabbitMQ broker, which dramatiq's CLI boots: logging of a worker process.
    broker.add_middleware(WorkerProcessBoot())
    # Worker processes only (process_boot), not in the stub stack:
    broker.add_middleware(StopWithParent())
    broker.add_middleware(SchemaGate())
    broker.add_middleware(QueueArgumentsGate())
    # The group's /metrics, served by one worker process (see bgworkers.middleware.exporter):
    broker.add_middleware(GroupExporter(serve=serve_group_metrics))
    return broker


def serve_group_metrics(directory: Path) -> MetricsServer | None:
    """The worker group's endpoint (imported when a worker process claims it, not before)."""
    from bgworkers.monitoring.endpoints import start_group_exporter
    from bgworkers.settings import get_settings

    return start_group_exporter(get_settings(), directory)


def tracing_middleware() -> list[Middleware]:
    """The tracing middleware when the ``OTEL_*`` variables ask for traces; else none."""
    if not tracing_on():
        return []
    from bgworkers.middleware.tracing import Tracing

    return [Tracing()]


def build_stub_broker(settings: Settings) -> StubBroker:
    """The same stack on dramatiq's in-memory broker, for fast unit tests."""
    return StackStubBroker(middleware=middleware_stack(settings))
