"""Whether RabbitMQ answers: one AMQP connection opened and closed, named as a
:class:`~bgworkers.processes.diagnosis.Problem` when it fails.

Here, beside the node list it connects through (:mod:`bgworkers.brokers.broker_nodes`), so
that the diagnosis vocabulary (:mod:`bgworkers.processes.diagnosis`) needs no broker code.
"""

from __future__ import annotations

from bgworkers.brokers.broker_nodes import connection_parameters
from bgworkers.processes.diagnosis import Problem, broker_problem, quiet_pika


def probe_broker_problem(url: str, *, timeout_s: float = 5.0) -> Problem | None:
    """Open and close one AMQP connection; None if it worked, else what is wrong.

    pika's own error lines about this connection are held back: the answer says it all.
    """

    with quiet_pika():
        return _probe(url, timeout_s)


def _probe(url: str, timeout_s: float) -> Problem | None:
    import pika

    try:
        # Every node of the list: the broker is reachable when one of them answers.
        parameters = connection_parameters(
            url,
            socket_timeout=timeout_s,
            connection_attempts=1,
            blocked_connection_timeout=timeout_s,
            stack_timeout=timeout_s,  # the whole set-up: TCP, AMQP handshake, channel
        )
        connection = pika.BlockingConnection(parameters)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is what we report
        return broker_problem(exc, url)
    connection.close()
    return None
