"""``bgworkers``: the admin command (migrations, the all-in-one runner, schedule, health)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bgworkers.settings import Settings


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from bgworkers import migrations
    from bgworkers.db import get_engine

    migrations.upgrade(get_engine(settings))
    print("database schema is up to date")
    return 0


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from bgworkers.logs import redact_text
    from bgworkers.middleware.connectivity import probe_broker
    from bgworkers.runner import default_children, supervise

    error = probe_broker(settings.broker_url.get_secret_value(), timeout_s=3.0)
    if error is not None:
        print(
            f"bgworkers: RabbitMQ does not answer at BGW_BROKER_URL ({redact_text(error)}). "
            "Start one (make run does it on Debian: deploy/ensure-rabbitmq.sh) or point "
            "BGW_BROKER_URL at a running broker.",
            file=sys.stderr,
        )
        return 1
    _migrate(settings, args)
    return supervise(default_children(processes=args.processes, threads=args.threads))


def _schedule(settings: Settings, args: argparse.Namespace) -> int:
    from bgworkers.scheduling.report import print_schedule

    print_schedule(settings, sys.stdout)
    return 0


def _health(settings: Settings, args: argparse.Namespace) -> int:
    from bgworkers.monitoring.report import print_health

    return print_health(settings, sys.stdout)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bgworkers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(
        handler=_migrate
    )
    run = sub.add_parser("run", help="run workers and scheduler together (Ctrl-C stops)")
    run.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    run.add_argument("--threads", type=int, default=4, help="threads per process (default 4)")
    run.set_defaults(handler=_run)
    sub.add_parser("schedule", help="list periodic jobs, next and last runs").set_defaults(
        handler=_schedule
    )
    sub.add_parser(
        "health", help="RabbitMQ, database, scheduler heartbeat and queue depths"
    ).set_defaults(handler=_health)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from bgworkers.errors import ConfigurationError

    try:
        import bgworkers  # noqa: F401 - settings and broker, as the workers have them
        from bgworkers.boot import boot_process

        settings = boot_process()
    except ConfigurationError as error:
        print(f"bgworkers: {error}", file=sys.stderr)
        return 2
    handler = args.handler
    code: int = handler(settings, args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
