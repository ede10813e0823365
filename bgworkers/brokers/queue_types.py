"""The arguments of every queue bgworkers declares: classic (dramatiq's) or quorum queues.

Why: dramatiq 2.2 declares classic queues only, and a classic queue lives on one RabbitMQ
node; when that node dies its queue is gone until the node returns. A quorum queue is
replicated (Raft) over the cluster's nodes and keeps working while a majority of them runs.
``BGW_QUEUE_TYPE`` picks one type for ``<q>``, ``<q>.DQ`` and ``<q>.XQ`` alike.

Per queue ``q``, with ``BGW_QUEUE_TYPE=quorum``:

- ``q`` and ``q.DQ``: ``x-queue-type: quorum``; dead-lettering to ``q.XQ`` exactly as
  dramatiq does (default exchange, routing key ``q.XQ``), with
  ``x-dead-letter-strategy: at-least-once`` (RabbitMQ keeps a dead-lettered message in the
  source queue until ``q.XQ`` has confirmed it, instead of dropping it on the way when a
  node dies) and ``x-overflow: reject-publish``, which that strategy requires;
  ``x-delivery-limit``: see below.
- ``q.XQ``: ``x-queue-type: quorum`` and dramatiq's 7-day ``x-message-ttl``; no delivery
  limit (the console's XQ walk hands messages back with ``basic_nack(requeue=True)``, and the
  XQ has nowhere further to dead-letter to).

``x-delivery-limit`` (``BGW_QUEUE_DELIVERY_LIMIT``, default 20): how many times RabbitMQ
hands the same message out again after it came back unacknowledged (a worker process that
died or lost its connection, a channel closed by RabbitMQ). Retries do not count: the retry
policy acknowledges the failed message and publishes a new one to ``q.DQ``. So the limit
guards against a message that kills its worker process every time (a crash loop), which
otherwise never ends. It must also leave room for honest redeliveries: a ``.DQ`` message
waits unacknowledged in a worker's memory until its ETA (up to ``BGW_RETRY_MAX_BACKOFF_MS``),
and every worker restart, deploy or node loss in that time hands it out once more. 20 allows
that many restarts inside one delay; past it the message is dead-lettered to ``q.XQ``, where
the console can requeue it, never dropped.

No priorities (quorum queues refuse ``x-max-priority``), no global QoS (dramatiq sets the
prefetch per consumer) and every queue durable (as dramatiq declares them), so nothing here
is refused by a quorum queue. Classic queues get exactly dramatiq's arguments, so existing
queues keep matching.

A queue's type and arguments cannot change once declared: RabbitMQ answers a declaration
with other arguments with ``PRECONDITION_FAILED`` and closes the channel.
:func:`mismatch_message` turns that into one line that names the queue and the way out
(docs/scaling.md, "Changing the queue type").
"""

from __future__ import annotations

import re
from typing import Any, Literal

from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
from dramatiq.common import xq_name

from bgworkers.errors import ConfigurationError

QueueType = Literal["classic", "quorum"]
MIGRATION_DOC = "docs/scaling.md, 'Changing the queue type'"


def queue_arguments(
    queue_name: str, *, queue_type: QueueType, delivery_limit: int
) -> dict[str, Any]:
    """Arguments of ``q`` and ``q.DQ`` (both dead-letter to ``q.XQ``)."""
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": xq_name(queue_name),
    }
    if queue_type == "quorum":
        arguments.update(
            {
                "x-queue-type": "quorum",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
                "x-delivery-limit": delivery_limit,
            }
        )
    return arguments


def dead_letter_queue_arguments(*, queue_type: QueueType) -> dict[str, Any]:
    """Arguments of ``q.XQ``: dramatiq's message TTL (a static value: messages expire from
    the head of the queue in order)."""
    arguments: dict[str, Any] = {"x-message-ttl": DEAD_MESSAGE_TTL}
    if queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
    return arguments


class QueueArgumentsMismatch(ConfigurationError):
    """A queue exists with other arguments (another type, another delivery limit)."""

    def __init__(self, queue: str, *, queue_type: QueueType, broker_reply: str) -> None:
        super().__init__(mismatch_message(queue, queue_type=queue_type, broker_reply=broker_reply))
        self.queue = queue


_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for queue '[^']*' in vhost '(?P<vhost>[^']*)': "
    r"received (?P<received>.+?) but current is (?P<current>.+)$"
)


#: Arguments bgworkers sets on quorum queues only: a mismatch on one of them is a type mismatch.
_QUORUM_ONLY = frozenset({"x-queue-type", "x-dead-letter-strategy", "x-overflow"})


def mismatch_message(queue: str, *, queue_type: QueueType, broker_reply: str) -> str:
    """One line: which queue, what it is, which argument differs, and the way out."""
    match = _INEQUIVALENT.search(broker_reply)
    kind = "with other arguments"
    if match is None:
        detail = broker_reply.removeprefix("PRECONDITION_FAILED - ")[:200]
        where = ""
    else:
        current, received = _short(match["current"]), _short(match["received"])
        detail = f"{match['arg']} is {current} there, bgworkers declares {received}"
        where = f" in vhost {match['vhost']!r}"
        if match["arg"] in _QUORUM_ONLY:
            if queue_type == "quorum" and current == "unset":
                kind = "as a classic queue"
            elif queue_type == "classic" and received == "unset":
                kind = "as a quorum queue"
    return (
        f"queue {queue!r}{where} already exists {kind} ({detail}); "
        f"RabbitMQ cannot change a queue's type or arguments, and BGW_QUEUE_TYPE is "
        f"{queue_type!r}: move to new queues and drain the old ones as {MIGRATION_DOC} "
        "describes, or set BGW_QUEUE_TYPE back to what the queues are"
    )


def _short(value: str) -> str:
    """``the value 'quorum' of type 'longstr'`` -> ``'quorum'``; ``none`` -> ``unset``."""
    value = value.strip()
    if value == "none":
        return "unset"
    quoted = re.match(r"(?:the value )?('[^']*')", value)
    return quoted.group(1) if quoted else value[:40]
