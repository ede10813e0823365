"""Build the broker with bgworkers' middleware stack.

Order matters: dramatiq runs ``before_*`` hooks in list order and ``after_*`` hooks in
reverse. Logging comes first so every later hook logs with the message's context; the retry
policy comes last so its decision (retry or dead-letter) is made before the logging and
metrics middleware report the outcome.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
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

from bgworkers.boot import WorkerProcessBoot
from bgworkers.middleware.connectivity import BrokerConnectivityCheck
from bgworkers.middleware.message_logging import MessageLogging
from bgworkers.middleware.metrics import MessageMetrics
from bgworkers.middleware.resources import CloseResources
from bgworkers.middleware.retry_policy import RetryPolicy
from bgworkers.scheduling.middleware import ScheduleGuard
from bgworkers.settings import Settings


def middleware_stack(settings: Settings) -> list[Middleware]:
    return [
        MessageLogging(),
        MessageMetrics(),
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        CurrentMessage(),
        ScheduleGuard(),  # in place of periodiq's middleware: see bgworkers.scheduling
        CloseResources(),
        RetryPolicy(
            max_retries=settings.retry_max_retries,
            min_backoff_ms=settings.retry_min_backoff_ms,
            max_backoff_ms=settings.retry_max_backoff_ms,
        ),
    ]


def build_broker(settings: Settings) -> RabbitmqBroker:
    """A RabbitMQ broker with publisher confirms; connects lazily, on first use."""
    url = settings.broker_url.get_secret_value()
    # confirm_delivery: without it a publish that RabbitMQ drops is lost silently.
    broker = RabbitmqBroker(url=url, confirm_delivery=True, middleware=middleware_stack(settings))
    broker.add_middleware(BrokerConnectivityCheck(url=url))
    # Only the RabbitMQ broker, which dramatiq's CLI boots: logging of a worker process.
    broker.add_middleware(WorkerProcessBoot())
    return broker


def build_stub_broker(settings: Settings) -> StubBroker:
    """The same stack on dramatiq's in-memory broker, for fast unit tests."""
    return StubBroker(middleware=middleware_stack(settings))


def install(broker: dramatiq.Broker) -> None:
    dramatiq.set_broker(broker)
