"""``bgworkers``: the admin command (migrations, the all-in-one runner, schedule, health,
backups, and the operations console: dead letters, send, jobs, queues, the web console)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported inside the commands, within the error boundary
    from bgworkers.settings import Settings


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from bgworkers import migrations
    from bgworkers.db.engine import get_engine

    applied = migrations.upgrade(get_engine(settings))
    if applied:
        print(f"database schema migrated: applied {len(applied)} revision(s): {', '.join(applied)}")
    else:
        print("database schema is up to date (nothing to apply)")
    return 0


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from bgworkers.brokers.probe import probe_broker_problem
    from bgworkers.cli.cli_errors import say
    from bgworkers.processes.runner import default_children, supervise

    problem = probe_broker_problem(settings.broker_url.get_secret_value(), timeout_s=3.0)
    if problem is not None:
        return say(problem)
    _migrate(settings, args)
    return supervise(default_children(processes=args.processes, threads=args.threads))


def _schedule(settings: Settings, args: argparse.Namespace) -> int:
    from bgworkers.db.engine import get_engine
    from bgworkers.migrations import check_schema
    from bgworkers.scheduling.report import print_schedule

    check_schema(get_engine(settings))
    print_schedule(settings, sys.stdout)
    return 0


def _health(settings: Settings, args: argparse.Namespace) -> int:
    from bgworkers.monitoring.report import print_health

    return print_health(settings, sys.stdout)


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    from bgworkers.files.commands import backup_command

    return backup_command(
        settings,
        args.backup_command,
        user_id=getattr(args, "user_id", None),
        archive=getattr(args, "archive", None),
        out=sys.stdout,
        err=sys.stderr,
    )


def _move_queues(settings: Settings, args: argparse.Namespace) -> int:
    from bgworkers import broker
    from bgworkers.brokers.queue_move import move_queues
    from bgworkers.settings import broker_urls

    broker_urls(args.from_url)  # a malformed URL: one line, before anything is touched
    moved = move_queues(
        args.from_url,
        broker,
        report=lambda m: print(f"{m.queue}: {m.messages} message(s) moved", flush=True),
    )
    total = sum(m.messages for m in moved)
    print(f"moved {total} message(s) to the queues of BGW_BROKER_URL ({settings.queue_type})")
    return 0


def _user_id(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text!r}")
    return int(text)


def _add_backup_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = sub.add_parser("backup", help="list, verify or restore per-user archives")
    backup.set_defaults(handler=_backup)
    commands = backup.add_subparsers(
        dest="backup_command", required=True, metavar="{list,verify,restore}"
    )
    listing = commands.add_parser("list", help="a user's archives in BGW_BACKUP_DIR, oldest first")
    listing.add_argument("user_id", type=_user_id, metavar="USER_ID")
    verify = commands.add_parser("verify", help="check an archive's members and checksums")
    verify.add_argument("archive", metavar="ARCHIVE", help="path of the archive")
    restore = commands.add_parser(
        "restore", help="put a deleted user's archive back into the database"
    )
    restore.add_argument("user_id", type=_user_id, metavar="USER_ID")
    restore.add_argument(
        "archive",
        metavar="ARCHIVE",
        help="path of the archive, a run id (20261129T010000Z) or 'latest' in BGW_BACKUP_DIR",
    )


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bgworkers",
        description="The admin command of bgworkers: migrations, the all-in-one runner, "
        "the schedule and a health report. Workers and scheduler in production: "
        "`dramatiq bgworkers` and `periodiq bgworkers`.",
    )
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
    move = sub.add_parser(
        "move-queues",
        help="move what is left in another vhost's queues to ours (changing the queue type)",
    )
    move.add_argument(
        "--from", dest="from_url", required=True, metavar="URL",
        help="the old vhost's broker URL (;-separated nodes allowed); see docs/scaling.md",
    )  # fmt: skip
    move.set_defaults(handler=_move_queues)
    from bgworkers.console.commands import add_commands as add_console_commands

    _add_backup_parser(sub)
    add_console_commands(sub)  # dead, send, jobs, queues, console: bgworkers.console.commands
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: the command, inside the error boundary (:mod:`.cli_errors`)."""
    from bgworkers.cli.cli_errors import run_guarded

    return run_guarded(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    args = make_parser().parse_args(argv)
    from bgworkers.errors import ConfigurationError

    try:
        import bgworkers  # noqa: F401 - settings and broker, as the workers have them
        from bgworkers.processes.boot import boot_process

        settings = boot_process()
    except ConfigurationError as error:
        print(f"bgworkers: {error}", file=sys.stderr)
        return 2
    code: int = args.handler(settings, args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
