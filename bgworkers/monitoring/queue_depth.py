"""Queue depths read from RabbitMQ, exported as Prometheus gauges.

Why a cache: a scrape must stay cheap, and asking RabbitMQ about 15 queues on every scrape of
every Prometheus replica adds load for nothing. Readings are refreshed at most every
``BGW_QUEUE_DEPTH_INTERVAL_S`` seconds and served from memory in between.

Two sources, RabbitMQ's management API and, when it does not answer, AMQP passive declares:
docs/monitoring.md says what each counts. Delayed and retried messages wait in ``<queue>.DQ``
held unacknowledged by a worker until due, so "delayed" counts both the ready and the
unacknowledged messages of ``.DQ`` (over AMQP only those no worker has taken yet).

Why the standard library's HTTP client and not httpx: this runs in the worker that serves the
group's metrics, for one GET every few seconds, and httpx with its TLS context cost that worker
4.7 MiB (of a no-op worker's 82) that urllib, already loaded there, does not.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlparse

import pika
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bgworkers import queues
from bgworkers.brokers.broker_nodes import open_blocking_connection
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.loggers import get_logger
from bgworkers.metrics.reading import BackgroundReading

log = get_logger(__name__)

#: A report's line for a queue RabbitMQ does not have yet (``declared`` False), not zeros.
NOT_DECLARED = "not declared yet: start a worker group (dramatiq bgworkers, or bgworkers run)"


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    ready: int
    delayed: int
    dead_letters: int
    unacked: int | None  # None when the source cannot tell
    consumers: int | None = None  # consumers of the queue itself (workers listening)
    #: ``classic`` or ``quorum`` (the management API tells; AMQP cannot: None).
    queue_type: str | None = None
    #: Seconds the message at the head of the queue has waited (None: unknown, see
    #: :func:`oldest_age_s`); 0 for an empty queue.
    oldest_age_s: float | None = None
    #: False when the queue itself does not exist on the broker yet (no worker group has
    #: declared it): its zeros then mean "nothing there yet", not "all caught up".
    declared: bool = True

    @property
    def lane(self) -> str:
        """``urgent`` for the time-critical lanes, ``bulk`` for the others."""
        return "urgent" if self.queue in queues.TIME_CRITICAL else "bulk"


def oldest_age_s(row: dict[str, Any], *, now: float) -> float | None:
    """Age of the head message from the management API's ``head_message_timestamp``: 0 for
    an empty queue, None when RabbitMQ cannot tell (docs/metrics.md says when; the outbox relay
    stamps what it publishes)."""
    if int(row.get("messages_ready", 0)) == 0:
        return 0.0
    stamp = row.get("head_message_timestamp")
    if not isinstance(stamp, int | float) or isinstance(stamp, bool):
        return None
    return max(now - float(stamp), 0.0)


def read_depths_amqp(
    broker_url: str, names: Iterable[str] = queues.ALL, *, timeout_s: float = 5.0
) -> list[QueueDepth]:
    """Passive declares over one connection; a queue not declared yet reads as empty, with
    ``declared`` False when the queue itself is missing.

    ``timeout_s`` bounds the connection's set-up (socket and AMQP handshake) on each node."""
    connection = open_blocking_connection(  # any node of the list
        broker_url, socket_timeout=timeout_s, stack_timeout=timeout_s, connection_attempts=1
    )
    try:
        depths = []
        for name in names:
            counts = []
            consumers = 0
            declared = True
            for suffix in ("", ".DQ", ".XQ"):
                channel = connection.channel()
                try:
                    result = channel.queue_declare(name + suffix, passive=True)
                    counts.append(int(result.method.message_count))
                    if not suffix:
                        consumers = int(result.method.consumer_count)
                    channel.close()
                except pika.exceptions.ChannelClosedByBroker:
                    counts.append(0)  # 404: the queue does not exist yet
                    declared = declared and bool(suffix)
            ready, delayed, dead = counts
            depths.append(
                QueueDepth(name, ready, delayed, dead, None, consumers, declared=declared)
            )
        return depths
    finally:
        if connection.is_open:  # a lost connection's close would hide the error that lost it
            connection.close()


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it would send the broker's credentials elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


def read_depths_management(
    api_url: str, broker_url: str, names: Iterable[str] = queues.ALL, *, timeout_s: float = 5.0
) -> list[QueueDepth]:
    """One GET of ``/api/queues/<vhost>``; credentials are the broker URL's.

    Raises ``OSError`` (``urllib.error.URLError``, ``HTTPError`` for a non-2xx answer or a
    redirect, which is not followed) when the API does not answer, ``ValueError`` or
    ``KeyError`` when the answer is not its format.
    """
    broker = urlparse(broker_url.split(";", 1)[0])
    vhost = unquote(broker.path[1:]) if len(broker.path) > 1 else "/"
    columns = urlencode(
        {
            "columns": "name,type,messages_ready,messages_unacknowledged,consumers,"
            "head_message_timestamp"
        }
    )
    credentials = f"{unquote(broker.username or 'guest')}:{unquote(broker.password or 'guest')}"
    request = urllib.request.Request(
        f"{api_url.rstrip('/')}/api/queues/{quote(vhost, safe='')}?{columns}",
        headers={
            "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode("ascii"),
            "Accept": "application/json",
        },
    )
    with _NO_REDIRECTS.open(request, timeout=timeout_s) as response:
        rows = json.loads(response.read())
    by_name = {q["name"]: q for q in rows}

    def count(name: str, field: str) -> int:
        return int(by_name.get(name, {}).get(field, 0))

    depths = []
    now = time.time()
    for name in names:
        row = by_name.get(name, {})
        kind = row.get("type")
        depths.append(
            QueueDepth(
                name,
                count(name, "messages_ready"),
                count(f"{name}.DQ", "messages_ready")
                + count(f"{name}.DQ", "messages_unacknowledged"),
                count(f"{name}.XQ", "messages_ready"),
                count(name, "messages_unacknowledged"),
                count(name, "consumers"),
                kind if isinstance(kind, str) else None,
                oldest_age_s(row, now=now) if row else 0.0,
                declared=name in by_name,
            )
        )
    return depths


class QueueDepthCollector(BackgroundReading[list[QueueDepth]], Collector):
    """Serves the latest reading; a background thread refreshes it every ``interval_s``."""

    def __init__(
        self, read: Callable[[], list[QueueDepth]], *, interval_s: float, start: bool = True
    ) -> None:
        super().__init__("queue-depth", read, initial=[], interval_s=interval_s, start=start)

    def collect(self) -> Iterator[Metric]:
        depths, last_success, errors = self.snapshot()
        families = {
            "ready": GaugeMetricFamily(
                "bgworkers_queue_ready_messages", "Messages waiting in the queue.", labels=["queue"]
            ),
            "delayed": GaugeMetricFamily(
                "bgworkers_queue_delayed_messages",
                "Delayed or retrying messages (<queue>.DQ).",
                labels=["queue"],
            ),
            "dead_letters": GaugeMetricFamily(
                "bgworkers_queue_dead_letter_messages",
                "Dead-lettered messages kept in <queue>.XQ.",
                labels=["queue"],
            ),
            "unacked": GaugeMetricFamily(
                "bgworkers_queue_unacked_messages",
                "Messages delivered to workers and not yet acknowledged.",
                labels=["queue"],
            ),
        }
        for depth in depths:
            for field, family in families.items():
                value = getattr(depth, field)
                if value is not None:
                    family.add_metric([depth.queue], value)
        yield from families.values()
        yield from _waiting_families(depths)
        yield GaugeMetricFamily(
            "bgworkers_queue_depth_last_success_timestamp_seconds",
            "Unix time of the last successful queue-depth reading (0: never).",
            value=last_success,
        )
        yield CounterMetricFamily(
            "bgworkers_queue_depth_read_errors",
            "Failed queue-depth readings since the metrics process started.",
            value=errors,
        )


def _waiting_families(depths: list[QueueDepth]) -> Iterator[Metric]:
    """Why work waits, per queue and lane: who consumes it and how old its head message is."""
    consumers = GaugeMetricFamily(
        "bgworkers_queue_consumers",
        "Consumers (worker processes listening) of the queue.",
        labels=["queue", "lane"],
    )
    oldest = GaugeMetricFamily(
        "bgworkers_queue_oldest_message_age_seconds",
        "Seconds the message at the head of the queue has waited (when RabbitMQ tells).",
        labels=["queue", "lane"],
    )
    for depth in depths:
        if depth.consumers is not None:
            consumers.add_metric([depth.queue, depth.lane], depth.consumers)
        if depth.oldest_age_s is not None:
            oldest.add_metric([depth.queue, depth.lane], depth.oldest_age_s)
    yield consumers
    yield oldest


def management_url_for(broker_url: str, setting: str | None) -> str | None:
    """The management API to ask: the setting, else the broker's host on port 15672.

    ``off`` means AMQP only.
    """
    if setting is not None:
        return None if setting.strip().lower() == "off" else setting
    host = urlparse(broker_url.split(";", 1)[0]).hostname or "127.0.0.1"
    return f"http://{host}:15672"


def reader_from_settings(
    broker_url: str, management_setting: str | None
) -> Callable[[], list[QueueDepth]]:
    """Management API first (it sees messages held by workers); AMQP when it does not answer."""
    api_url = management_url_for(broker_url, management_setting)
    fallback_logged = False

    def read() -> list[QueueDepth]:
        nonlocal fallback_logged
        if api_url is not None:
            try:
                return read_depths_management(api_url, broker_url)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                if not fallback_logged:
                    log.warning(
                        "queue_depth_management_unavailable",
                        url=api_url,
                        error=failure_reason(exc),
                        fallback="AMQP: no unacknowledged counts, delayed excludes held messages",
                    )
                    fallback_logged = True
        return read_depths_amqp(broker_url)

    return read
