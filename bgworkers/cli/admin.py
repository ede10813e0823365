"""``bgworkers``: the admin command (migrations, the all-in-one runner, schedule, health,
backups, and the operations console: dead letters, send, jobs, queues, the web console), and
its error boundary: one line with the fix, never a traceback.

Why a boundary: the commands reach the settings, the database and RabbitMQ; a newcomer who has not
run ``bgworkers migrate``, or whose PostgreSQL is down, should read one sentence that says what to
do, not SQLAlchemy's 120 lines. Known conditions (see :mod:`bgworkers.processes.diagnosis`) become
``bgworkers: <what and the fix>`` on stderr with exit code 2 (something to change) or 3 (a
service that does not answer, the code every command gives for it; docs/console.md lists them
all). Anything else is a bug and keeps its traceback.

Also quiet: a reader that closes the pipe (``bgworkers health | head -3``) ends the command
without a ``BrokenPipeError`` traceback (exit 141, as a shell reports SIGPIPE), and Ctrl-C
prints ``bgworkers: interrupted`` (exit 130).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from bgworkers.errors import ConfigurationError
from bgworkers.processes.diagnosis import (
    EXIT_CONFIGURATION,
    Problem,
    SchemaNotReady,
    broker_problem,
    database_problem,
)

if TYPE_CHECKING:  # read inside the commands, within the error boundary
    from bgworkers.settings import Settings

EXIT_BROKEN_PIPE = 141
EXIT_INTERRUPTED = 130


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
    from bgworkers.brokers.broker_nodes import probe_broker_problem
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
    parser.set_defaults(json=False)  # the console's --json (see bgworkers.console.commands)
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
    """The console script: the command, inside the error boundary."""
    return run_guarded(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    args = make_parser().parse_args(argv)
    import bgworkers  # noqa: F401 - settings and broker, as the workers have them
    from bgworkers.processes.boot import boot_process

    # boot_process() raises ConfigurationError for a bad setting: the boundary prints it (2).
    code: int = args.handler(boot_process(), args)
    return code


def say(problem: Problem) -> int:
    """Print the problem's one line on stderr; return its exit code."""
    print(f"bgworkers: {problem.message}", file=sys.stderr, flush=True)
    return problem.exit_code


def run_guarded(body: Callable[[], int]) -> int:
    """Run a command's ``body``; turn known failures into one line and an exit code."""
    try:
        return body()
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("bgworkers: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except SchemaNotReady as exc:
        return say(exc.problem)
    except ConfigurationError as exc:
        return say(Problem("configuration", EXIT_CONFIGURATION, str(exc)))
    except Exception as exc:  # sorted below: a known condition, or re-raised
        problem = problem_of(exc)
        if problem is None:
            raise  # not a condition we know: a bug, whose traceback is what helps
        return say(problem)


def problem_of(exc: BaseException) -> Problem | None:
    """The known condition behind ``exc`` (database or RabbitMQ), if any."""
    import pika.exceptions
    from dramatiq.errors import BrokerConnectionError as DramatiqConnectionError
    from sqlalchemy.exc import DBAPIError

    from bgworkers.settings import get_settings

    settings = get_settings()  # already read successfully: the command got this far
    if isinstance(exc, DBAPIError):
        return database_problem(exc, settings.database_url.get_secret_value())
    if isinstance(exc, DramatiqConnectionError | pika.exceptions.AMQPError):
        cause = exc.__cause__ if isinstance(exc, DramatiqConnectionError) and exc.__cause__ else exc
        return broker_problem(cause, settings.broker_url.get_secret_value())
    return None


def _silence_stdout() -> None:
    # Python flushes stdout again at exit and would report the broken pipe there too.
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):  # stdout closed or not a real file
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    raise SystemExit(main())
