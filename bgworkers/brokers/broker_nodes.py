"""Several RabbitMQ nodes in ``BGW_BROKER_URL``: ``amqp://...@node1/vh;amqp://...@node2/vh``.

Why: any node of a cluster serves any queue, so a process that lost its node should connect
to the next one by itself (docs/scaling.md, "Setting up a cluster"). pika's
``BlockingConnection`` tries a list of parameters in order, and dramatiq's broker builds that
list from a ``;``-separated URL; every other connection bgworkers opens goes through
:func:`connection_parameters` to fail over the same way, and is logged with :func:`node_of`.
:func:`probe_broker_problem` is here, beside the node list it connects through, so that the
diagnosis vocabulary (:mod:`bgworkers.processes.diagnosis`) needs no broker code.
"""

from __future__ import annotations

from typing import Any

import pika

from bgworkers.compat.pika import parameters_in_use
from bgworkers.processes.diagnosis import Problem, broker_problem, quiet_pika
from bgworkers.settings import broker_urls


def connection_parameters(text: str, **overrides: Any) -> list[pika.URLParameters]:
    """One pika parameter set per URL of ``text``, each with ``overrides`` applied
    (``socket_timeout=5``, ``connection_attempts=1``, ...)."""
    parameters = []
    for url in broker_urls(text):
        params = pika.URLParameters(url)
        for name, value in overrides.items():
            setattr(params, name, value)
        parameters.append(params)
    return parameters


def describe_parameters(params: pika.ConnectionParameters) -> str:
    """``host:port/vhost`` of one parameter set (no user, no password); ``host:port/`` for
    the default vhost ``/``."""
    vhost = "" if params.virtual_host == "/" else params.virtual_host
    return f"{params.host}:{params.port}/{vhost}"


def node_of(connection: Any) -> str:
    """``host:port/vhost`` of the node a pika connection (blocking or not) is open to."""
    params = parameters_in_use(connection)
    if params is None:
        return "unknown"
    return describe_parameters(params)


def open_blocking_connection(text: str, **overrides: Any) -> pika.BlockingConnection:
    """A blocking connection to the first node of ``text`` that answers.

    When no node accepts a TCP connection, pika raises ``AMQPConnectionError()`` with no
    text at all; the error raised then names the nodes tried, so a log line about it says
    more than ``AMQPConnectionError: ``.
    """
    parameters = connection_parameters(text, **overrides)
    try:
        return pika.BlockingConnection(parameters)
    except pika.exceptions.AMQPConnectionError as exc:
        if str(exc):
            raise
        tried = ", ".join(describe_parameters(params) for params in parameters)
        message = f"no connection to {tried} (refused, unreachable or timed out)"
        raise pika.exceptions.AMQPConnectionError(message) from exc


def probe_broker_problem(url: str, *, timeout_s: float = 5.0) -> Problem | None:
    """Open and close one AMQP connection to any node of ``url``; None if it worked, else
    what is wrong.

    pika's own error lines about this connection are held back: the answer says it all.
    """
    with quiet_pika():
        try:
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
