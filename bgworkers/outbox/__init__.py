"""The message outbox: messages recorded in the caller's transaction, published by a relay.

``enqueue(session, actor, *args, ...)`` writes the message in the caller's session; the
relay (:mod:`bgworkers.outbox.relay`, run inside the worker group) publishes committed rows
to RabbitMQ in confirmed batches. See docs/outbox.md for when to use it and when
``actor.send()``.
"""

from bgworkers.outbox.api import Enqueued, enqueue, enqueue_many

__all__ = ["Enqueued", "enqueue", "enqueue_many"]
