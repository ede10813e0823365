from __future__ import annotations

import dramatiq
from dramatiq.middleware import Middleware, SkipMessage

from bgworkers import queues
from bgworkers.settings import get_settings
from bgworkers.stack.broker import build_stub_broker
from bgworkers.tasks import task
from tests.platform_helpers import running_worker


class SkipEverything(Middleware):
    """Stands for any middleware before ours that skips a message (dramatiq#703-like)."""

    def before_process_message(self, broker: dramatiq.Broker, message: object) -> None:
        raise SkipMessage()


def test_in_progress_never_goes_negative_when_an_earlier_middleware_skips(registry) -> None:
    broker = build_stub_broker(get_settings())
    broker.middleware.insert(0, SkipEverything())
    actor = task(queue=queues.FILES, broker=broker)(lambda: None)
    with running_worker(broker):
        for _ in range(3):
            actor.send()
        broker.join(queues.FILES)
    labels = {"queue": "files", "actor": "<lambda>"}
    assert registry.get_sample_value("bgworkers_messages_in_progress", labels) in (None, 0)
    assert registry.get_sample_value("bgworkers_messages_skipped_total", labels) == 3
    assert registry.get_sample_value("bgworkers_messages_processed_total", labels) == 0


def test_counts_work_in_a_plain_in_process_worker_without_process_boot(registry) -> None:
    broker = build_stub_broker(get_settings())  # no process_boot signal: as in most test suites

    def ok() -> None:
        return None

    actor = task(queue=queues.FILES, broker=broker)(ok)
    with running_worker(broker):
        for _ in range(5):
            actor.send()
        broker.join(queues.FILES)
    labels = {"queue": "files", "actor": "ok"}
    assert registry.get_sample_value("bgworkers_messages_processed_total", labels) == 5
    assert registry.get_sample_value("bgworkers_messages_failed_total", labels) == 0
    assert registry.get_sample_value("bgworkers_messages_in_progress", labels) == 0


def test_two_attempts_of_one_message_overlapping_are_each_counted(registry) -> None:
    """A zero-delay retry (or a redelivery) can start before the first attempt's after-hooks."""
    from dramatiq import Message
    from dramatiq.broker import MessageProxy

    from bgworkers.middleware.metrics import MessageMetrics

    broker = build_stub_broker(get_settings())
    actor = task(queue=queues.FILES, broker=broker)(lambda: None)
    message = Message(
        queue_name="files", actor_name=actor.actor_name, args=(), kwargs={}, options={}
    )
    first, retry = MessageProxy(message), MessageProxy(message)  # same message id
    metrics = MessageMetrics()
    metrics.before_process_message(broker, first)
    metrics.before_process_message(broker, retry)
    metrics.after_process_message(broker, first, exception=RuntimeError("boom"))
    metrics.after_process_message(broker, retry)
    labels = {"queue": "files", "actor": "<lambda>"}
    assert registry.get_sample_value("bgworkers_messages_processed_total", labels) == 2
    assert registry.get_sample_value("bgworkers_messages_in_progress", labels) == 0


def test_series_follow_a_new_registry_between_messages(registry) -> None:
    """The middleware keeps its labelled series per metric set: a swapped registry counts."""
    from prometheus_client import CollectorRegistry

    from bgworkers.metrics import use_registry

    broker = build_stub_broker(get_settings())

    def counted() -> None:
        return None

    actor = task(queue=queues.FILES, broker=broker)(counted)
    labels = {"queue": "files", "actor": "counted"}
    with running_worker(broker):
        actor.send()
        broker.join(queues.FILES)
        fresh = CollectorRegistry()
        use_registry(fresh)
        actor.send()
        actor.send()
        broker.join(queues.FILES)
    assert registry.get_sample_value("bgworkers_messages_processed_total", labels) == 1
    assert fresh.get_sample_value("bgworkers_messages_processed_total", labels) == 2
    assert fresh.get_sample_value("bgworkers_messages_in_progress", labels) == 0
