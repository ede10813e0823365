"""Queue depths for the console's command and overview, read only from a broker that answers.

Why the broker is asked first: the depths come from RabbitMQ's management API when it answers,
found on the broker's host at port 15672 whatever the broker URL's port, and it may answer when
the broker of ``BGW_BROKER_URL`` does not (a wrong port, a stopped node beside another, AMQP
blocked). Its figures, zeros for every queue it does not hold, then read as all well. One AMQP
connection opened and closed first (the readiness probe's) makes "not read" the answer instead.
"""

from __future__ import annotations

from collections.abc import Callable

import pika.exceptions

from bgworkers.brokers.broker_nodes import probe_broker_problem
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.redaction import redact_text
from bgworkers.monitoring.queue_depth import QueueDepth, reader_from_settings
from bgworkers.processes.diagnosis import quiet_pika
from bgworkers.settings import Settings

#: What the console shows for a queue RabbitMQ does not have yet, instead of a row of zeros:
#: a worker group declares every queue when it starts (``bgworkers run`` starts one).
NOT_DECLARED = "not declared yet: start a worker group (dramatiq bgworkers, or bgworkers run)"


class QueuesNotRead(Exception):
    """The queue depths could not be read; the text says what failed and why, in one line."""


def checked_depth_reader(settings: Settings) -> Callable[[], list[QueueDepth]]:
    """A reader (made once per process) that raises :class:`QueuesNotRead` unless the broker
    of the settings answers and its depths were read."""
    url = settings.broker_url.get_secret_value()
    read = reader_from_settings(url, settings.rabbitmq_management_url)

    def read_checked() -> list[QueueDepth]:
        problem = probe_broker_problem(url, timeout_s=settings.readiness_timeout_s)
        if problem is not None:
            raise QueuesNotRead(problem.message)
        try:
            with quiet_pika():
                return read()
        except (pika.exceptions.AMQPError, OSError) as exc:  # gone since the probe
            reason = redact_text(failure_reason(exc)).splitlines()[0][:300]
            raise QueuesNotRead(f"RabbitMQ stopped answering ({reason})") from None

    return read_checked
