"""Why work waits: lanes, consumers, the head message's age and provider rate-limit waits."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers.monitoring.queue_depth import QueueDepth, QueueDepthCollector, oldest_age_s
from bgworkers.sync.api import rate_limit_waits
from bgworkers.sync.models import RateLimitSlot


def test_the_head_messages_age_comes_from_its_timestamp() -> None:
    assert oldest_age_s({"messages_ready": 3, "head_message_timestamp": 1_000}, now=1_042.5) == 42.5
    assert oldest_age_s({"messages_ready": 0}, now=1_000) == 0.0  # empty: nothing waits
    # A head message sent without a timestamp (or a quorum queue): unknown, not zero.
    assert oldest_age_s({"messages_ready": 3}, now=1_000) is None


def test_consumers_and_age_are_exported_per_queue_and_lane() -> None:
    depths = [
        QueueDepth("urgent", 0, 0, 0, 0, consumers=2, oldest_age_s=0.0),
        QueueDepth("email", 500, 0, 0, 16, consumers=0, oldest_age_s=98.0),
    ]
    collector = QueueDepthCollector(lambda: depths, interval_s=60, start=False)
    collector.refresh()
    registry = CollectorRegistry()
    registry.register(collector)
    age = registry.get_sample_value(
        "bgworkers_queue_oldest_message_age_seconds", {"queue": "email", "lane": "bulk"}
    )
    consumers = registry.get_sample_value(
        "bgworkers_queue_consumers", {"queue": "urgent", "lane": "urgent"}
    )
    assert (age, consumers) == (98.0, 2.0)


def test_rate_limit_waits_add_up_credentials_per_provider(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        session.add_all(
            [
                RateLimitSlot(key="notion:token:a", next_at=0, paused_until=2_000, waited_s=3.0),
                RateLimitSlot(key="notion:token:b", next_at=0, paused_until=0, waited_s=4.5),
                RateLimitSlot(key="notion:all", next_at=0, paused_until=0, waited_s=9.0),
                RateLimitSlot(key="google:user:7", next_at=0, paused_until=0, waited_s=1.0),
            ]
        )
        session.commit()
        waits = {w.provider: w for w in rate_limit_waits(session, now=1_000)}
    assert (waits["notion"].waited_s, waits["notion"].credentials) == (7.5, 2)
    assert waits["notion"].paused_now == 1 and waits["google"].paused_now == 0
