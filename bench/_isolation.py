"""What every benchmark touching RabbitMQ shares: queues of its own and a quiet log.

Why: a benchmark runs against the broker of ``BGW_BROKER_URL``, which may be the one an
application is using. It must never purge or consume the application's queues (``email``,
``maintenance``, their ``.DQ`` and ``.XQ``): it declares queues with names of its own
(``bench-<what>-<random>``), and deletes exactly those when it ends, also on failure. And it
prints figures: the per-message log lines (INFO) would bury them, so only warnings are logged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import dq_name, xq_name

from bgworkers.logs.loggers import configure_logging


def quiet_logs() -> None:
    """Readable warnings only: a benchmark's output is its figures."""
    configure_logging(log_format="console", level="WARNING")
    logging.getLogger().setLevel(logging.WARNING)


@contextmanager
def own_queue(broker: RabbitmqBroker, what: str) -> Iterator[str]:
    """A fresh queue (and its ``.DQ``/``.XQ``) for the block, deleted afterwards."""
    name = f"bench-{what}-{uuid.uuid4().hex[:8]}"
    broker.declare_queue(name, ensure=True)
    try:
        yield name
    finally:
        channel = broker.channel
        for queue in (name, dq_name(name), xq_name(name)):
            channel.queue_delete(queue)
        print(f"bench_queue={name} (deleted with its .DQ and .XQ)")
