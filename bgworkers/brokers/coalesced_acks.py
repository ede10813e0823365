"""Acks handed to the consumer's connection in batches, without a flush each.

Why: dramatiq's RabbitMQ consumer acks each message from the worker thread that ran it by
scheduling ``channel.basic_ack`` on the connection's thread (``add_callback_threadsafe``:
a wake-up write on pika's socket pair), and pika's blocking ``basic_ack`` then runs its
I/O loop until that one frame is written. Under load that was a third of a worker process's
CPU (py-spy, 1 process x 8 threads draining no-op messages), and every wake-up and every
flush gives up the GIL, which the consumer thread then waits to get back from busy worker
threads.

Here a worker thread appends the delivery tag to a deque and schedules one callback only if
none is pending; the callback, on the connection's thread, acks every tag waiting through
the channel's asynchronous ``basic_ack``, which queues the frame. The consumer thread's own
I/O loop (it runs continuously while it waits for deliveries) writes it out with whatever
else is pending. Each message is still acked on its own, in the order its run ended, and
only after its after-hooks ran, so nothing changes for delivery guarantees: an ack lost with
the connection means a redelivery, as before.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pika.exceptions
from dramatiq.errors import ConnectionClosed

from bgworkers.compat.dramatiq import delivery_tag
from bgworkers.compat.pika import async_channel


class CoalescedAcks:
    """Mixin for dramatiq's ``_RabbitmqConsumer``: ``ack`` as described in the module.

    Relies on the consumer's ``connection`` (a ``pika.BlockingConnection``), ``channel``,
    ``known_tags`` and ``logger``, and on pika's asynchronous channel inside the blocking one
    (:mod:`bgworkers.compat.pika`, :mod:`bgworkers.compat.dramatiq`).
    """

    connection: Any
    channel: Any
    known_tags: set[int]
    logger: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set before any worker thread can ack: a deque made lazily by two threads at once
        # could lose the tags appended to the one that was not kept.
        self._bgw_pending_acks: deque[int] = deque()
        self._bgw_ack_scheduled = False
        super().__init__(*args, **kwargs)

    def ack(self, message: Any) -> None:
        try:
            self.known_tags.remove(delivery_tag(message))
        except KeyError:
            self.logger.warning("Failed to ack message: not in known tags.")
            return
        # Appended before the flag is read, and the flag is cleared before the callback
        # drains: a tag appended while a callback is pending is always drained by it.
        self._bgw_pending_acks.append(delivery_tag(message))
        if self._bgw_ack_scheduled:
            return
        self._bgw_ack_scheduled = True
        try:
            self.connection.add_callback_threadsafe(self._send_pending_acks)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
            self._bgw_ack_scheduled = False
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        except Exception:  # as dramatiq's ack: the message is redelivered, the worker goes on
            self._bgw_ack_scheduled = False
            self.logger.warning("Failed to ack message.", exc_info=True)

    def _send_pending_acks(self) -> None:
        """On the connection's thread: every waiting tag acked, frames queued for writing."""
        self._bgw_ack_scheduled = False
        pending = self._bgw_pending_acks
        channel = async_channel(self.channel)
        while pending:
            channel.basic_ack(delivery_tag=pending.popleft())
