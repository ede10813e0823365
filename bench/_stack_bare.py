"""Bare dramatiq for ``stack_overhead.py``: its default middleware, one no-op actor.

Run as ``dramatiq _stack_bare --path bench`` with ``BENCH_STACK_BROKER_URL`` set to the
benchmark's own vhost.
"""

from __future__ import annotations

import os

import dramatiq
from _stack_noop import noop
from dramatiq.brokers.rabbitmq import RabbitmqBroker

QUEUE = "bench-bare"

broker = RabbitmqBroker(url=os.environ["BENCH_STACK_BROKER_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def bench_noop(sent_at: float = 0.0) -> None:
    noop(sent_at)
