"""Taking messages out of ``<queue>.XQ``: requeue them (retries reset) or purge them.

AMQP cannot read a queue without taking from it, so both walk the XQ with ``basic_get``, as
docs/console.md (``bgworkers dead requeue``) describes: every message is held unacknowledged
on one channel while the walk goes on (RabbitMQ never hands a held message out twice on the
channel, so the walk ends when the queue has nothing left to give) and every one not handled
is given back in its place when the walk ends. Messages that are not dramatiq messages are
never touched.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dramatiq import Message
from dramatiq.common import xq_name

from bgworkers.brokers.broker_nodes import open_blocking_connection
from bgworkers.console.dead_letters import FIRST_FAILURE_OPTION, REQUEUES_OPTION

#: Retry bookkeeping dropped from a requeued message, so it starts afresh.
_RESET_OPTIONS = ("retries", "traceback", "requeue_timestamp", "eta", FIRST_FAILURE_OPTION)
#: Upper bound of one walk, in messages: beyond it the walk stops (and says so).
MAX_WALK = 100_000


@dataclass
class WalkResult:
    handled: list[str] = field(default_factory=list)  # message ids, in XQ order
    truncated: bool = False  # MAX_WALK reached before the end of the queue


def decode(body: bytes) -> Message[Any] | None:
    """The dramatiq message in ``body``, or None for anything else."""
    try:
        message: Message[Any] = Message(**json.loads(body))
    # Not JSON, not an object of a message's fields, or JSON nested too deep to parse (such a
    # body can sit in an XQ: a requeue of the whole queue must still end with a line).
    except (ValueError, TypeError, RecursionError):
        return None
    valid = isinstance(message.options, dict) and isinstance(message.message_id, str)
    return message if valid else None


def fresh_copy(message: Message[Any]) -> Message[Any]:
    """The message as it goes back to its queue: same id, retries reset, requeues counted."""
    options = {k: v for k, v in message.options.items() if k not in _RESET_OPTIONS}
    requeues = options.get(REQUEUES_OPTION, 0)
    options[REQUEUES_OPTION] = (requeues if isinstance(requeues, int) else 0) + 1
    queue = message.queue_name.removesuffix(".DQ").removesuffix(".XQ")
    return dataclasses.replace(message, queue_name=queue, options=options)


def walk_xq(
    broker_url: str,
    queue: str,
    *,
    message_ids: Iterable[str] | None,
    handle: Callable[[Message[Any]], None],
) -> WalkResult:
    """Take the given messages (every one when ``message_ids`` is None) out of ``queue``'s XQ,
    calling ``handle`` on each.

    A message is acknowledged (removed from the XQ) only after ``handle`` returned (a crash in
    between leaves a duplicate, never a loss: actors are idempotent); when ``handle`` raises,
    it and every message not yet handled are given back, and the error propagates.
    """
    ids = None if message_ids is None else set(message_ids)
    result = WalkResult()
    connection = open_blocking_connection(broker_url, socket_timeout=10)  # any node of the list
    try:
        channel = connection.channel()
        try:
            for _ in range(MAX_WALK):
                method, _properties, body = channel.basic_get(xq_name(queue), auto_ack=False)
                if method is None:
                    break
                message = decode(body)
                if message is not None and (ids is None or message.message_id in ids):
                    handle(message)
                    channel.basic_ack(method.delivery_tag)
                    result.handled.append(message.message_id)
            else:
                result.truncated = True
        finally:
            if channel.is_open:
                # Everything still held goes back; the handled ones were acked already.
                channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
                channel.close()
    finally:
        connection.close()
    return result


def requeue(
    broker_url: str,
    queue: str,
    *,
    message_ids: Iterable[str] | None,
    publish: Callable[[Message[Any]], None],
) -> WalkResult:
    """Send the given messages (every one when ``message_ids`` is None) back to their queue."""
    return walk_xq(
        broker_url, queue, message_ids=message_ids, handle=lambda m: publish(fresh_copy(m))
    )


def purge(broker_url: str, queue: str, *, message_ids: Iterable[str] | None) -> WalkResult:
    """Remove the given messages (every one when ``message_ids`` is None) from the XQ."""
    return walk_xq(broker_url, queue, message_ids=message_ids, handle=lambda message: None)
