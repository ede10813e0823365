"""Run the outbox relay inside the worker group: a thread per worker process, of which the
database lease lets one publish (docs/outbox.md, "The relay"). Off with
``BGW_OUTBOX_RELAY_ENABLED=false`` (a separate ``python -m bgworkers.outbox`` relay then).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import Middleware

from bgworkers.db.engine import get_engine
from bgworkers.outbox.publishers import BrokerPublisher, Publisher, RabbitmqConfirmPublisher
from bgworkers.outbox.relay import Relay, RelayConfig
from bgworkers.settings import Settings


def relay_for(broker: dramatiq.Broker, settings: Settings) -> Relay:
    """A relay set by ``BGW_OUTBOX_*``, publishing with confirms on the RabbitMQ broker's URL
    (through the broker's own ``enqueue`` on another broker)."""
    if isinstance(broker, RabbitmqBroker):
        publisher: Publisher = RabbitmqConfirmPublisher(
            settings.broker_url.get_secret_value(),
            declare=lambda queue: broker.declare_queue(queue, ensure=True),
        )
    else:
        publisher = BrokerPublisher(broker)
    config = RelayConfig(
        batch_size=settings.outbox_batch_size,
        poll_interval_s=settings.outbox_poll_interval_s,
        lease_s=settings.outbox_lease_s,
        retention=timedelta(hours=settings.outbox_retention_hours),
    )
    return Relay(engine=get_engine, publisher=publisher, config=config)


class OutboxRelay(Middleware):
    """Starts the relay thread when a worker boots; ``enabled`` is read at that moment."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.enabled = settings.outbox_relay_enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if not self.enabled or self._thread is not None:
            return
        relay = relay_for(broker, self._settings)
        self._stop.clear()
        self._thread = threading.Thread(
            target=relay.run, args=(self._stop,), name="outbox-relay", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=10)
