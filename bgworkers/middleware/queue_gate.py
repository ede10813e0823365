"""Worker processes refuse to start when a queue exists with other arguments than configured.

Why: RabbitMQ cannot change a queue's type. A worker started with ``BGW_QUEUE_TYPE=quorum``
on a vhost whose queues are classic (or the other way round) would otherwise log a refused
declaration every 3 s per consumer and never consume. Checked once per worker process at
boot, like :class:`~bgworkers.middleware.schema_gate.SchemaGate`: every declared queue is
declared (``<q>``, ``<q>.DQ``, ``<q>.XQ``); a mismatch prints one line naming the queue and
the migration procedure, then exit code 2 ("a restart will not help"). RabbitMQ not
answering is left to the consumers, which wait for it as before.
"""

from __future__ import annotations

import sys

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware import Middleware

from bgworkers.brokers.cluster_broker import QueueArgumentsMismatch
from bgworkers.processes.diagnosis import EXIT_CONFIGURATION


class QueueArgumentsGate(Middleware):
    """Stops a ``dramatiq bgworkers`` worker process at boot on a queue-type mismatch."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        problem = first_mismatch(broker)
        if problem is not None:
            err = sys.__stderr__ or sys.stderr
            print(f"bgworkers: worker not started: {problem}", file=err, flush=True)
            raise SystemExit(EXIT_CONFIGURATION)


def first_mismatch(broker: dramatiq.Broker) -> QueueArgumentsMismatch | None:
    """Declare every queue of ``broker``; the first refused one, or None.

    The connection used is closed afterwards (this thread does not publish later).
    """
    if not isinstance(broker, RabbitmqBroker):
        return None
    try:
        for queue in sorted(broker.get_declared_queues()):
            broker.declare_queue(queue, ensure=True)
    except QueueArgumentsMismatch as exc:
        return exc
    except BrokerConnectionError:
        return None  # unreachable now: the consumers retry and log it
    finally:
        del broker.connection
    return None
