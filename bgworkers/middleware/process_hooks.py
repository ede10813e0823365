"""Process hooks of the worker processes a CLI starts (docs/architecture.md, "Middleware (in
order)", says what each does). ``process_boot`` is the first hook that runs inside each process
dramatiq forks, before any consumer starts.

:class:`StopWithParent`: SIGTERM is dramatiq's own "stop gracefully" signal, so an orphaned
worker finishes or returns its messages instead of consuming unsupervised.

:class:`SchemaGate`. Why: a worker on an unmigrated database failed every scheduled message in
a middleware ("no such table") and dead-lettered work that would have run fine after
``bgworkers migrate``. Its exit code 2 is passed on by dramatiq's CLI, and ``bgworkers run``
and the deploy files treat it as "a restart will not help". The check runs in a short-lived
forked child (the worker process has started no thread yet): it needs the migration tooling
(alembic and the migration scripts, about 10 MiB), which the worker itself never uses again.
A database that does not answer is waited for (:class:`DatabaseWait`): a worker process that
exited instead made a supervisor restart the whole group in a loop (and systemd gives up after
a few tries), where the same group started without RabbitMQ simply waits.

:class:`QueueArgumentsGate`. Why: RabbitMQ cannot change a queue's type; a worker started with
``BGW_QUEUE_TYPE=quorum`` on a vhost whose queues are classic (or the other way round) would
otherwise log a refused declaration every 3 s per consumer and never consume.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware import Middleware

from bgworkers.brokers.cluster_broker import QueueArgumentsMismatch
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.intervals import LogIntervalsByKey
from bgworkers.logs.loggers import get_logger, redact_text
from bgworkers.processes.diagnosis import (
    EXIT_CONFIGURATION,
    EXIT_UNAVAILABLE,
    Problem,
    database_problem,
)
from bgworkers.processes.runner import set_parent_death_signal
from bgworkers.settings import Settings, get_settings

log = get_logger(__name__)


def _say_why_not_started(why: object) -> None:
    # stderr of the process as started: dramatiq redirects sys.stderr to its log pipe.
    print(f"bgworkers: worker not started: {why}", file=sys.__stderr__ or sys.stderr, flush=True)


class StopWithParent(Middleware):
    """Asks the kernel to send SIGTERM to this worker process when its parent dies."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        set_parent_death_signal(signal.SIGTERM)


class SchemaGate(Middleware):
    """Stops a ``dramatiq bgworkers`` worker process at boot if the schema is not current;
    makes it wait, paused, while the database does not answer."""

    def __init__(self) -> None:
        self._database_away = False
        self._wait: DatabaseWait | None = None

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        code = _in_child(check_schema_or_say_why)
        self._database_away = code == EXIT_UNAVAILABLE
        if code and not self._database_away:
            raise SystemExit(code)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._database_away:
            self._wait = DatabaseWait(worker, get_settings())
            self._wait.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._wait is not None:
            self._wait.stop.set()


def probe_database(settings: Settings, *, dispose: bool = False) -> Problem | None:
    """None when the database answers and has the current schema; else why not. ``dispose``:
    close the engine's connections afterwards (a child about to exit, not to leave them to the
    kernel)."""
    from bgworkers.db.engine import get_engine
    from bgworkers.migrations import schema_problem

    try:
        engine = get_engine(settings)
        try:
            return schema_problem(engine)  # raises the database's error when it does not answer
        finally:
            if dispose:
                engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure is the condition we report
        return database_problem(exc, settings.database_url.get_secret_value()) or Problem(
            "database_unreachable", EXIT_UNAVAILABLE, f"the database failed: {failure_reason(exc)}"
        )


def check_schema_or_say_why() -> int:
    """0 when the schema is current; else print one line on stderr and return the exit code."""
    # The child runs before the worker's logging is set up (after-hooks run in reverse order):
    # alembic's own INFO lines ("setup plugin ...", "Context impl ...") would reach stderr.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    problem = probe_database(get_settings(), dispose=True)
    if problem is None or problem.exit_code == EXIT_UNAVAILABLE:
        return 0 if problem is None else EXIT_UNAVAILABLE  # waited for, logged once booted
    _say_why_not_started(problem.message)
    return problem.exit_code


def _in_child(check: Callable[[], int]) -> int:
    """``check()``'s result, computed in a forked child so its imports stay out of this process."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into the worker's code
        code = EXIT_UNAVAILABLE
        try:
            code = check()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else EXIT_UNAVAILABLE


@dataclass
class DatabaseWait:
    """Pauses ``worker`` and resumes it once the database answers (a thread of its own).

    ``interval_s``: seconds between two probes; ``log_interval_s``: between two lines about
    the same condition.
    """

    worker: dramatiq.Worker
    settings: Settings
    _: KW_ONLY
    probe: Callable[[Settings], Problem | None] = probe_database
    interval_s: float = 5.0
    log_interval_s: float = 60.0
    exit_process: Callable[[int], None] = os._exit
    stop: threading.Event = field(init=False, default_factory=threading.Event)
    resumed: threading.Event = field(init=False, default_factory=threading.Event)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="database-wait", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        self.worker.pause()
        notices = LogIntervalsByKey(self.log_interval_s)
        url = redact_text(self.settings.database_url.get_secret_value())
        while not self.stop.is_set():
            problem = self.probe(self.settings)
            if problem is None:
                log.info("database_reachable", database_url=url)
                self.worker.resume()
                self.resumed.set()
                return
            if problem.exit_code != EXIT_UNAVAILABLE:  # a schema to migrate: a restart won't do
                log.error(problem.condition, database_url=url, hint=problem.message)
                for handler in logging.getLogger().handlers:
                    handler.flush()  # the line reaches the log before the process ends
                self.exit_process(problem.exit_code)
                return
            if notices.of(problem.condition).due():
                log.error(
                    problem.condition,
                    database_url=url,
                    hint=f"{problem.message}. The worker waits for it and consumes nothing "
                    "meanwhile; messages wait in RabbitMQ.",
                )
            self.stop.wait(self.interval_s)


class QueueArgumentsGate(Middleware):
    """Stops a ``dramatiq bgworkers`` worker process at boot on a queue-type mismatch."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        problem = first_mismatch(broker)
        if problem is not None:
            _say_why_not_started(problem)
            raise SystemExit(EXIT_CONFIGURATION)


def first_mismatch(broker: dramatiq.Broker) -> QueueArgumentsMismatch | None:
    """Declare every queue of ``broker``; the first refused one, or None. The connection used
    is closed afterwards (this thread does not publish later)."""
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
