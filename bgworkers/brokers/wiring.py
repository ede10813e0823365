"""The broker bgworkers' actors live on: built on first need, installed once per process.

Why on demand: importing a module of bgworkers must build nothing (docs/architecture.md,
"Processes"). The broker is made when an actor is declared (:func:`app_broker`), when
``bgworkers.broker`` is read (:func:`wire`: the broker and every domain's actors), or when a
CLI loads ``bgworkers`` (:func:`bgworkers.stack.wire_for_cli`; the package's ``__init__``
says why). Making it opens no connection.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dramatiq

#: Every module that declares actors, one per domain; a new domain adds its line here.
ACTOR_MODULES: tuple[str, ...] = (
    "bgworkers.maintenance.actors",
    "bgworkers.reminders.actors",
    "bgworkers.email.actors",
    "bgworkers.files.actors",
    "bgworkers.sync.actors",
    "bgworkers.console.actors",
    "bgworkers.scheduling.actors",
)

# Re-entrant: importing the actor modules declares actors, which asks for the broker again.
_lock = threading.RLock()
_broker: dramatiq.Broker | None = None
_builder: Callable[..., dramatiq.Broker] | None = None
_schedule: Callable[[str], Any] | None = None


def hand_over(
    *, builder: Callable[..., dramatiq.Broker], periodic_option: Callable[[str], Any]
) -> None:
    """Name what makes the broker (:func:`bgworkers.stack.build_app_broker`) and what gives a
    ``@task(periodic=True)`` actor its ``periodic`` option (from the schedule table).

    Why handed in: both sit far above this package; the package's ``__init__``, imported
    before any of its modules, hands them over.
    """
    global _builder, _schedule
    _builder, _schedule = builder, periodic_option


def periodic_option(actor_name: str) -> Any:
    """The ``periodic`` option of the actor ``actor_name``, from the schedule table."""
    if _schedule is None:
        raise RuntimeError("bgworkers/__init__ hands the schedule over")
    return _schedule(actor_name)


def app_broker(*, worker_process: bool = False) -> dramatiq.Broker:
    """bgworkers' RabbitMQ broker, made on the first call and installed as dramatiq's broker.

    ``worker_process``: the broker of a process that dramatiq's or periodiq's CLI runs; it also
    carries the middleware whose hooks only such a process should run (see
    :func:`bgworkers.stack.broker.build_broker`). Only the first call decides.
    """
    global _broker
    with _lock:
        if _broker is None:
            if _builder is None:
                raise RuntimeError("bgworkers/__init__ hands the broker's builder over")
            _broker = _builder(worker_process=worker_process)
        return _broker


def wire(*, worker_process: bool = False) -> dramatiq.Broker:
    """The broker with every domain's actors declared on it."""
    broker = app_broker(worker_process=worker_process)
    for module in ACTOR_MODULES:
        importlib.import_module(module)
    return broker
