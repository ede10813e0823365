"""``python -m bgworkers.outbox``: a relay on its own, until SIGTERM or SIGINT.

For deployments with ``BGW_OUTBOX_RELAY_ENABLED=false`` (docs/outbox.md, "The relay").
"""

from __future__ import annotations

import signal
import sys
import threading

from bgworkers.outbox.middleware import relay_for
from bgworkers.settings import get_settings


def main() -> int:
    from bgworkers.errors import ConfigurationError
    from bgworkers.processes.boot import boot_process

    try:
        settings = boot_process(get_settings())
    except ConfigurationError as error:
        print(f"bgworkers: {error}", file=sys.stderr)
        return 2
    from bgworkers.brokers.wiring import wire
    from bgworkers.monitoring.endpoints import start_relay_endpoint

    start_relay_endpoint(settings)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    relay_for(wire(), settings).run(stop)  # wire(): the actors too, as workers have them
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
