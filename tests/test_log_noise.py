"""The library-noise filter: one line per kind and interval, tracebacks folded."""

from __future__ import annotations

import logging

from bgworkers.logs.log_noise import LibraryNoiseFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(
    name: str, msg: str, *args: object, exc: BaseException | None = None
) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, exc_info)


def test_repeats_of_a_kind_are_held_back_then_counted() -> None:
    clock = Clock()
    noise = LibraryNoiseFilter(interval_s=60, clock=clock)
    template = "Connection workflow failed: %r"
    assert noise.filter(record("pika.adapters.blocking_connection", template, "port 1"))
    for port in range(2, 12):
        clock.now += 1
        assert not noise.filter(record("pika.adapters.blocking_connection", template, port))
    # Another kind (another template, or a consumer of another queue folded to the same name).
    assert noise.filter(record("pika.adapters.blocking_connection", "Socket failed: %s", "x"))
    consumer = "dramatiq.worker.ConsumerThread({})"
    assert noise.filter(record(consumer.format("email"), "Restarting consumer in %s", 3))
    assert not noise.filter(record(consumer.format("files"), "Restarting consumer in %s", 3))
    clock.now += 60
    later = record("pika.adapters.blocking_connection", template, "port 99")
    assert noise.filter(later)
    assert later.getMessage() == (
        "Connection workflow failed: 'port 99' [10 similar line(s) in the last 60 s not shown]"
    )


def test_tracebacks_are_folded_and_other_loggers_pass_untouched() -> None:
    noise = LibraryNoiseFilter(interval_s=60, clock=Clock())
    failed = record(
        "pika.adapters.blocking_connection",
        "Error in _create_connection().",
        exc=ConnectionRefusedError(111, "Connection refused"),
    )
    assert noise.filter(failed)
    assert failed.exc_info is None
    assert failed.getMessage() == (
        "Error in _create_connection(). (ConnectionRefusedError: [Errno 111] Connection refused)"
    )
    ours = record("bgworkers.scheduling", "same %s", "line")
    assert noise.filter(ours) and noise.filter(record("bgworkers.scheduling", "same %s", "line"))


def test_a_lost_connection_is_one_warning_without_the_stack_pika_puts_in_its_text() -> None:
    clock = Clock()
    noise = LibraryNoiseFilter(interval_s=60, clock=clock, broker_nodes=["rabbit-a:5672"])
    stack = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in _produce\n'
        "ConnectionResetError: [Errno 104] Connection reset by peer\n"
    )
    wrapped = record(
        "pika.adapters.utils.io_services_utils",
        "Wrapped func exited with exception. Caller's stack:\n%s",
        stack,
        exc=ConnectionResetError(104, "Connection reset by peer"),
    )
    assert noise.filter(wrapped)
    assert wrapped.levelno == logging.WARNING and wrapped.levelname == "WARNING"
    assert wrapped.getMessage() == (
        "RabbitMQ connection to rabbit-a:5672 lost "
        "(ConnectionResetError: [Errno 104] Connection reset by peer); dramatiq reconnects"
    )
    # pika's other lines about the same reset are the same kind: held back, then counted.
    channel = record(
        "pika.adapters.blocking_connection",
        "Unexpected connection close detected: %r",
        "StreamLostError: ('Stream connection lost: ConnectionResetError(104)',)",
    )
    assert not noise.filter(channel)
    clock.now += 60
    consumer = logging.LogRecord(
        "dramatiq.worker.ConsumerThread(email)",
        logging.CRITICAL,
        __file__,
        1,
        "Consumer encountered a connection error: %s",
        ("StreamLostError: ('Transport indicated EOF',)",),
        None,
    )
    assert noise.filter(consumer) and consumer.levelname == "WARNING"
    assert consumer.getMessage() == (
        "RabbitMQ connection to rabbit-a:5672 lost "
        "(StreamLostError: ('Transport indicated EOF',)); dramatiq reconnects"
        " [1 similar line(s) in the last 60 s not shown]"
    )
    refused = record("pika.adapters.blocking_connection", "Connection workflow failed: %r", "x")
    assert noise.filter(refused) and refused.levelno == logging.ERROR  # not a lost connection


def test_a_lost_connection_names_the_peer_pika_saw_and_never_a_password() -> None:
    nodes = ["rabbit-a:5672", "rabbit-b:5672"]
    noise = LibraryNoiseFilter(interval_s=60, clock=Clock(), broker_nodes=nodes)
    produce = record(
        "pika.adapters.utils.io_services_utils",
        "_AsyncBaseTransport._produce() failed, aborting connection: error=%r; sock=%s",
        ConnectionResetError(104, "Connection reset by peer"),
        "<socket.socket fd=7, laddr=('10.0.0.9', 40312), raddr=('10.0.0.2', 5672)>",
    )
    assert noise.filter(produce) and produce.levelname == "WARNING"
    assert produce.getMessage() == (
        "RabbitMQ connection to 10.0.0.2:5672 lost "
        "(ConnectionResetError(104, 'Connection reset by peer')); dramatiq reconnects"
    )
    unnamed = record("pika.adapters.base_connection", "Socket EOF; %s", "closing")
    assert not noise.filter(unnamed)  # the same lost connection, said again: one line
    noise = LibraryNoiseFilter(interval_s=60, clock=Clock(), broker_nodes=nodes)
    assert noise.filter(unnamed)
    assert "to rabbit-a:5672 or rabbit-b:5672 lost" in unnamed.getMessage()


def test_boot_names_the_configured_nodes_without_credentials() -> None:
    from pydantic import SecretStr

    from bgworkers.processes.boot import broker_nodes
    from bgworkers.settings import Settings

    url = "amqp://app:s3cret@rabbit-a:5672/v;amqp://app:s3cret@rabbit-b:5673/v"
    settings = Settings(broker_url=SecretStr(url))
    assert broker_nodes(settings) == ["rabbit-a:5672", "rabbit-b:5673"]


def test_a_database_away_is_one_failed_message_line_a_minute_without_traceback() -> None:
    from sqlalchemy.exc import OperationalError

    noise = LibraryNoiseFilter(interval_s=60, clock=Clock())
    away = OperationalError(
        "UPDATE email_outbox SET claim_token=%(token)s",
        {"token": "t0ken"},
        ConnectionRefusedError("connection refused\n\tIs the server running?"),
    )

    def failed(message: str) -> logging.LogRecord:
        return record(
            "dramatiq.worker.WorkerThread",
            "Failed to process message %s with unhandled exception.",
            message,
            exc=away,
        )

    first = failed("send_email(1)")
    assert noise.filter(first) and first.exc_info is None
    line = first.getMessage()
    assert line == (
        "Failed to process message send_email(1): the database did not answer "
        "(OperationalError: connection refused); the message is retried; start the database "
        "or fix BGW_DATABASE_URL"
    )
    assert first.levelno == logging.WARNING  # retried, not lost: no ERROR line
    assert not noise.filter(failed("send_email(2)"))
    other = record(
        "dramatiq.worker.WorkerThread",
        "Failed to process message %s with unhandled exception.",
        "x()",
        exc=ValueError("a bug"),
    )
    assert noise.filter(other) and other.exc_info is not None  # other errors keep theirs
