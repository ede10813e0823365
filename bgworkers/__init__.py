"""bgworkers: the background tasks of the personal-assistant backend.

The package root holds what an application or an operator names: :mod:`~bgworkers.settings`,
:mod:`~bgworkers.errors`, :mod:`~bgworkers.tasks` (``@task``), :mod:`~bgworkers.queues`, and
this module, which ``dramatiq bgworkers`` and ``periodiq bgworkers`` load; docs/architecture.md
draws the map of the platform's packages and the domains'.

Importing bgworkers, or any module of it, builds nothing (docs/architecture.md, "Processes"):
the broker and the actors are made on first need (:mod:`bgworkers.brokers.wiring`), and
``bgworkers.broker`` gives them to an application.

The one exception is being loaded by dramatiq's or periodiq's CLI. Both load their module
argument with ``dramatiq.cli.import_broker``, whose contract for a bare module name is "the
import sets dramatiq's global broker" (it then calls ``dramatiq.get_broker()``, which would
otherwise make a default broker on localhost with no actors); no hook or attribute lookup
tells a package that it is being loaded that way. So the package wires itself when
``dramatiq.cli``, that loader, was imported before it: in those CLIs' processes only, never
in an application's.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from bgworkers.brokers import wiring as _wiring
from bgworkers.brokers.wiring import ACTOR_MODULES
from bgworkers.db import tables as _tables
from bgworkers.stack import build_app_broker as _build_app_broker  # imports on call only

if TYPE_CHECKING:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker: RabbitmqBroker


def _load_tables() -> None:
    import bgworkers.stack.tables  # noqa: F401 - every table on SQLModel.metadata


def _periodic_option(actor_name: str) -> object:
    from bgworkers.scheduling.schedule import periodic_option  # the table, on first use

    return periodic_option(actor_name)


# Here, since this module is imported before any other of the package: whatever declares the
# first actor finds the builder and the schedule (see bgworkers.brokers.wiring.hand_over),
# and whatever reads the whole schema finds every table (bgworkers.db.tables).
_wiring.hand_over(builder=_build_app_broker, periodic_option=_periodic_option)
_tables.use_loader(_load_tables)


def __getattr__(name: str) -> object:
    if name == "broker":
        wired = _wiring.wire()
        globals()["broker"] = wired  # later reads are a plain attribute
        return wired
    raise AttributeError(f"module 'bgworkers' has no attribute {name!r}")


if "dramatiq.cli" in sys.modules:
    from bgworkers.errors import ConfigurationError
    from bgworkers.stack import wire_for_cli

    try:
        wire_for_cli()
    except ConfigurationError as _error:
        # Under dramatiq's or periodiq's CLI a traceback from a child process is easy to miss
        # and says nothing new: one plain line, and the configuration exit code.
        print(f"bgworkers: {_error}", file=sys.__stderr__, flush=True)
        raise SystemExit(2) from None

__all__ = ["ACTOR_MODULES", "broker"]
