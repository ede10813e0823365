"""bgworkers: the background tasks of the personal-assistant backend.

Importing this package is what ``dramatiq bgworkers`` and ``periodiq bgworkers`` do, so it
wires everything they need and nothing more: it reads the settings, prepares the metrics
directory, configures logging, builds the RabbitMQ broker with bgworkers' middleware, makes it
dramatiq's global broker and imports every domain's actors. It opens no connection: RabbitMQ
and the database are first contacted when a worker starts or a message is sent.
"""

from __future__ import annotations

import importlib
import sys

from bgworkers.errors import ConfigurationError
from bgworkers.metrics.multiproc import prepare_multiprocess_dir
from bgworkers.settings import get_settings

#: Every module that declares actors, one per domain; a new domain adds its line here.
ACTOR_MODULES: tuple[str, ...] = (
    "bgworkers.maintenance.actors",
    "bgworkers.reminders.actors",
    "bgworkers.email.actors",
    "bgworkers.files.actors",
    "bgworkers.sync.actors",
    "bgworkers.scheduling.actors",
)

try:
    _settings = get_settings()
except ConfigurationError as _error:
    # Under dramatiq's CLI a traceback from a worker process is easy to miss: say it plainly.
    print(f"bgworkers: {_error}", file=sys.__stderr__, flush=True)
    raise SystemExit(2) from None

prepare_multiprocess_dir(_settings.metrics_dir)  # before anything imports prometheus_client

from bgworkers.broker import build_broker, install  # noqa: E402
from bgworkers.logs import configure_logging  # noqa: E402

configure_logging(log_format=_settings.log_format, level=_settings.log_level)
broker = build_broker(_settings)
install(broker)

for _module in ACTOR_MODULES:
    importlib.import_module(_module)

if sys.argv and sys.argv[0].endswith("periodiq"):
    # The scheduler has no process hook of its own: serve its /metrics, /healthz and /readyz
    # from here (a listening socket on BGW_SCHEDULER_METRICS_PORT; nothing is contacted).
    from bgworkers.metrics.server import start_scheduler_endpoint

    start_scheduler_endpoint(_settings)

__all__ = ["ACTOR_MODULES", "broker"]
