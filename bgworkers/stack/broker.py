"""Build the broker with bgworkers' middleware stack: the composition root.

Order matters: dramatiq runs ``before_*`` hooks in list order and ``after_*`` hooks in
reverse, so logging comes first (every later hook logs with the message's context) and the
retry policy decides before logging and metrics report the outcome; docs/architecture.md
("Middleware (in order)", checked against this list by a test) says where each other sits.

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
from bgworkers.middleware.message_logging import MessageLogging
from bgworkers.middleware.metrics import MessageMetrics
from bgworkers.middleware.process_hooks import QueueArgumentsGate, SchemaGate, StopWithParent
from bgworkers.middleware.retry_policy import RetryPolicy
from bgworkers.middleware.worker_hooks import BrokerConnectivityCheck, CloseResources, GroupExporter
from bgworkers.outbox.middleware import OutboxRelay
from bgworkers.processes.boot import WorkerProcessBoot
from bgworkers.scheduling.middleware import ScheduleGuard
from bgworkers.settings import Settings, broker_urls
from bgworkers.stack.known_series import initialise_from_settings
from bgworkers.tracing.config import require_extra, tracing_on

if TYPE_CHECKING:
    from bgworkers.metrics.server import MetricsServer


def middleware_stack(settings: Settings) -> list[Middleware]:
    tracing: list[Middleware] = []
    if tracing_on():  # only when the OTEL_* variables ask for traces
        from bgworkers.middleware.tracing import Tracing

        tracing.append(Tracing())
    return [
        *tracing,  # first: its spans enclose every other hook of a message
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
    :mod:`bgworkers.brokers.wiring`), which also gets the middleware with process hooks (its
    own logging, dying with its parent, the schema and queue checks at boot, the group's
    metrics); an application's broker, or one a test boots in-process, has none of them.
    """
    process_middleware: list[Middleware] = []
    if worker_process:
        require_extra()  # bgworkers' own processes: a missing extra is one line and exit 2
        process_middleware = [
            WorkerProcessBoot(),
            StopWithParent(),
            SchemaGate(),
            QueueArgumentsGate(),
            GroupExporter(serve=serve_group_metrics),  # served by one worker process
        ]
    url = settings.broker_url.get_secret_value()
    # confirm_delivery: without it a publish that RabbitMQ drops is lost silently.
    return ScreeningRabbitmqBroker(
        url=broker_urls(url),
        confirm_delivery=True,
        queue_type=settings.queue_type,
        delivery_limit=settings.queue_delivery_limit,
        middleware=[
            *middleware_stack(settings),
            # Not on the stub broker (nothing to reach); it has no message hooks.
            BrokerConnectivityCheck(url=url),
            *process_middleware,
        ],
        message_max_bytes=settings.message_max_bytes,
    )


def serve_group_metrics(directory: Path) -> MetricsServer | None:
    """The worker group's endpoint (imported when a worker process claims it, not before)."""
    from bgworkers.monitoring.endpoints import start_group_exporter
    from bgworkers.settings import get_settings

    return start_group_exporter(get_settings(), directory)


def build_stub_broker(settings: Settings) -> StubBroker:
    """The same stack on dramatiq's in-memory broker, for fast unit tests."""
    return StackStubBroker(middleware=middleware_stack(settings))
