"""The console's ``bgworkers`` subcommands: ``dead``, ``send``, ``jobs``, ``queues``, ``console``.

One line per item, or one JSON object per line with ``--json``; the exit codes (0 done, 1 not
found or not done, 2 bad input, 3 a service did not answer) are in ``docs/console.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TextIO

import pika.exceptions
from sqlalchemy.exc import SQLAlchemyError

from bgworkers.console.attempts import timeline_lines
from bgworkers.console.audit import cli_user
from bgworkers.console.dead_letters import DeadLetterFilter, as_dict, parse_since
from bgworkers.console.operations import ActionResult, Console, SendRefused
from bgworkers.logs.failure_reasons import failure_reason
from bgworkers.logs.loggers import redact_text
from bgworkers.monitoring.queue_depth import NOT_DECLARED, QueueDepth
from bgworkers.processes.diagnosis import EXIT_UNAVAILABLE as UNAVAILABLE
from bgworkers.settings import Settings

OK, NOT_DONE, BAD_INPUT = 0, 1, 2
Handler = Callable[[Settings, argparse.Namespace], int]


def make_console(settings: Settings, who: str | None = None) -> Console:
    """The console with this process's broker and engine (the CLI's and the web's)."""
    from bgworkers.brokers.wiring import wire
    from bgworkers.db.engine import get_engine

    return Console(
        settings=settings,
        broker=wire(),
        engine=get_engine(settings),
        who=who or cli_user(),
    )


def _since_argument(text: str) -> datetime:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print(
    args: argparse.Namespace, data: dict[str, Any], line: str, out: TextIO | None = None
) -> None:
    (out or sys.stdout).write((json.dumps(data, default=str) if args.json else line) + "\n")


def guarded(handler: Handler) -> Handler:
    """One clear line instead of a traceback when a service is down or the input is bad."""

    def run(settings: Settings, args: argparse.Namespace) -> int:
        from bgworkers.processes.diagnosis import quiet_pika

        try:
            # pika logs each step of a failed connection as an error of its own; the line
            # below (or the command's error boundary) says it once.
            with quiet_pika():
                return handler(settings, args)
        except SendRefused as exc:
            print(f"bgworkers {args.command}: {exc}", file=sys.stderr)
            return BAD_INPUT
        except (pika.exceptions.AMQPError, OSError, SQLAlchemyError) as exc:
            service = "the database" if isinstance(exc, SQLAlchemyError) else "RabbitMQ"
            error = redact_text(failure_reason(exc))
            print(f"bgworkers {args.command}: {service} did not answer ({error})", file=sys.stderr)
            return UNAVAILABLE

    return run


# --- dead -----------------------------------------------------------------------------------
def dead_list(settings: Settings, args: argparse.Namespace) -> int:
    status = None if args.status == "all" else args.status
    where = DeadLetterFilter(args.queue, args.actor, args.since, status, args.limit)
    for row in make_console(settings).dead_letters(where):
        line = (
            f"{row.message_id}  {row.last_failed_at:%Y-%m-%d %H:%M:%S}  {row.queue:<11} "
            f"{row.actor:<26} {row.status:<9} retries={row.retries}"
            f"{f' trace={row.trace_id}' if row.trace_id else ''} {row.error[:80]}"
        )
        _print(args, as_dict(row), line)
    return OK


def dead_show(settings: Settings, args: argparse.Namespace) -> int:
    console = make_console(settings)
    row = console.dead_letter(args.id)
    if row is None:
        print(f"bgworkers dead show: no dead letter {args.id!r} in the index", file=sys.stderr)
        return NOT_DONE
    data = as_dict(row, full=True) | {"attempts": console.dead_letter_timeline(args.id)}
    if args.json:
        _print(args, data, "")
        return OK
    for key in ("message_id", "queue", "actor", "status", "reason", "error", "retries"):
        print(f"{key + ':':<16} {data[key]}")
    for key in ("dead_count", "first_failed_at", "last_failed_at", "requeued_at"):
        print(f"{key + ':':<16} {data[key]}")
    print(f"{'trace_id:':<16} {data['trace_id'] or '-'}")
    print(f"{'arguments:':<16} {json.dumps(data['arguments'], ensure_ascii=False)}")
    print("attempts (started, wait before it, run time, outcome, error):")
    print("\n".join(timeline_lines(data["attempts"])))
    print("traceback:")
    print(row.traceback.rstrip() or "  (none recorded)")
    return OK


def _bad_targets(args: argparse.Namespace) -> bool:
    """Say so on stderr when the ids/--all/--queue combination is wrong."""
    if args.all and args.ids:
        problem = "give message ids or --all --queue Q, not both"
    elif args.all and not args.queue:
        problem = "--all needs --queue Q (one queue at a time)"
    elif not args.all and not args.ids:
        problem = "give one or more message ids, or --all --queue Q"
    else:
        return False
    print(f"bgworkers dead {args.dead_action}: {problem}", file=sys.stderr)
    return True


def _report(args: argparse.Namespace, verb: str, result: ActionResult) -> int:
    for message_id in result.done:
        _print(args, {"message_id": message_id, "result": verb}, f"{message_id}  {verb}")
    for message_id in result.not_found:
        line = f"{message_id}  not found (not a dead letter in the index, or no longer in the XQ)"
        _print(args, {"message_id": message_id, "result": "not_found"}, line)
    if result.truncated:
        print("bgworkers dead: stopped after looking at 100000 messages", file=sys.stderr)
    return NOT_DONE if result.not_found or result.truncated else OK


def dead_requeue(settings: Settings, args: argparse.Namespace) -> int:
    if _bad_targets(args):
        return BAD_INPUT
    console = make_console(settings)
    result = console.requeue_all(args.queue) if args.all else console.requeue(args.ids)
    return _report(args, "requeued", result)


def dead_purge(settings: Settings, args: argparse.Namespace) -> int:
    if _bad_targets(args):
        return BAD_INPUT
    what = f"every dead letter of {args.queue}" if args.all else f"{len(args.ids)} dead letter(s)"
    if not args.yes and not confirm(f"Delete {what} for good? [y/N] "):
        print("bgworkers dead purge: not confirmed, nothing deleted (--yes skips the question)")
        return NOT_DONE
    console = make_console(settings)
    result = console.purge_all(args.queue) if args.all else console.purge(args.ids)
    return _report(args, "purged", result)


def confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False  # no one to ask: a script must say --yes
    sys.stdout.write(question)
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in {"y", "yes"}


# --- send, jobs, queues ---------------------------------------------------------------------
def parse_arguments(pairs: Iterable[str]) -> dict[str, Any]:
    """``["k=v", ...]`` as keyword arguments (JSON values where they parse)."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise SendRefused(f"--arg {pair!r}: expected NAME=VALUE")
        if name in kwargs:
            raise SendRefused(f"--arg {name}: given twice")
        try:
            kwargs[name] = json.loads(text)
        except ValueError:
            kwargs[name] = text
    return kwargs


def send_message(settings: Settings, args: argparse.Namespace) -> int:
    kwargs = parse_arguments(args.arg)
    message = make_console(settings).send(args.actor, kwargs)
    data = {"message_id": message.message_id, "actor": args.actor, "queue": message.queue_name}
    _print(args, data, f"{message.message_id}  sent to {args.actor} ({message.queue_name})")
    return OK


def jobs(settings: Settings, args: argparse.Namespace) -> int:
    from bgworkers.console.jobs import print_jobs

    action = getattr(args, "job_action", None)
    if action == "pause":
        return _changed(make_console(settings).pause(args.job, args.reason), args, "paused")
    if action == "resume":
        return _changed(make_console(settings).resume(args.job), args, "resumed")
    if action == "runs":
        return job_runs(settings, args)
    if action == "run":
        message = make_console(settings).run_job(args.job)
        data = {"job": args.job, "message_id": message.message_id, "result": "sent"}
        _print(args, data, f"{args.job}  manual run sent ({message.message_id})")
        return OK
    views = make_console(settings).jobs()
    if not args.json:
        print_jobs(views, sys.stdout, zone=settings.tzinfo)
    for view in views if args.json else ():
        _print(args, view.as_dict(), "")
    return OK


def job_runs(settings: Settings, args: argparse.Namespace) -> int:
    """The job's last runs, each with its attempts: why a run started late or took long."""
    for run in make_console(settings).job_runs(args.job, args.limit):
        manual = " (manual)" if run["manual"] else ""
        duration = f"{run['duration_s']:.3f} s" if run["duration_s"] is not None else "-"
        line = (
            f"{run['tick']}{manual}  {run['status']:<15} claimed {run['waited_after_tick_s']:.3f} s"
            f" after its tick, took {duration}  message {run['message_id']}\n"
            + "\n".join(timeline_lines(run["attempts"]))
        )
        _print(args, run, line)
    return OK


def _changed(changed: bool, args: argparse.Namespace, verb: str) -> int:
    result = verb if changed else f"already {verb}"
    _print(args, {"job": args.job, "result": result}, f"{args.job}  {result}")
    return OK if changed else NOT_DONE


def queues(settings: Settings, args: argparse.Namespace) -> int:
    from bgworkers.console.overview import QueuesNotRead, checked_depth_reader

    try:
        depths = checked_depth_reader(settings)()
    except QueuesNotRead as exc:
        print(f"bgworkers {args.command}: queues not read: {exc}", file=sys.stderr)
        return UNAVAILABLE
    print_depths(depths, args, sys.stdout)
    _print_rate_limit_waits(args)
    return OK


def print_depths(depths: list[QueueDepth], args: argparse.Namespace, out: TextIO) -> None:
    """One line per queue; a queue RabbitMQ does not have yet says so instead of zeros, which
    would read as "all caught up" on a broker no worker group has used."""
    row = "{:<12} {:<7} {:>6} {:>8} {:>6} {:>8} {:>10} {:>8}  {}"
    if not args.json:
        header = ("queue", "lane", "ready", "delayed", "dead", "unacked", "consumers", "oldest")
        out.write(row.format(*header, "type") + "\n")
    for depth in depths:
        if not depth.declared:
            data = {"queue": depth.queue, "lane": depth.lane, "declared": False}
            _print(args, data, f"{depth.queue:<12} {depth.lane:<7} {NOT_DECLARED}", out)
            continue
        unacked = "-" if depth.unacked is None else str(depth.unacked)
        consumers = "-" if depth.consumers is None else str(depth.consumers)
        oldest = "-" if depth.oldest_age_s is None else f"{depth.oldest_age_s:.0f}s"
        counts = (depth.ready, depth.delayed, depth.dead_letters, unacked, consumers, oldest)
        line = row.format(depth.queue, depth.lane, *counts, depth.queue_type or "-")
        data = {
            "queue": depth.queue,
            "lane": depth.lane,
            "ready": depth.ready,
            "delayed": depth.delayed,
            "dead": depth.dead_letters,
            "unacked": depth.unacked,
            "consumers": depth.consumers,
            "oldest_age_s": depth.oldest_age_s,
            "type": depth.queue_type,
            "declared": True,
        }
        _print(args, data, line, out)


def _print_rate_limit_waits(args: argparse.Namespace) -> None:
    """Provider rate limits' waiting time, from the database (skipped when it cannot answer)."""
    from bgworkers.db.engine import session_scope
    from bgworkers.sync.api import rate_limit_waits

    try:
        with session_scope() as session:
            waits = rate_limit_waits(session)
    except SQLAlchemyError as exc:
        print(f"rate limits: not read: {_why_not_read(exc)}", file=sys.stderr)
        return
    if waits and not args.json:
        print("\nprovider      waited  credentials  paused")
    for wait in waits:
        line = (
            f"{wait.provider:<12} {wait.waited_s:>6.0f}s {wait.credentials:>12} "
            f"{wait.paused_now:>7}"
        )
        data = {
            "rate_limit": wait.provider,
            "waited_s": wait.waited_s,
            "credentials": wait.credentials,
            "paused_now": wait.paused_now,
        }
        _print(args, data, line)


def _why_not_read(exc: Exception) -> str:
    """The reason, with its fix, that the rate-limit table could not be read: most often a
    schema not migrated yet (the queue figures above came from RabbitMQ and are still good)."""
    from bgworkers.db.engine import get_engine
    from bgworkers.migrations import schema_problem
    from bgworkers.processes.diagnosis import database_problem

    engine = get_engine()
    try:
        problem = schema_problem(engine)
    except SQLAlchemyError as again:
        problem = database_problem(again, engine.url.render_as_string(hide_password=True))
    if problem is not None:
        return problem.message
    return failure_reason(exc).splitlines()[0][:200]


def serve_console(settings: Settings, args: argparse.Namespace) -> int:
    from bgworkers.console.web.server import serve

    return serve(settings, host=args.host, port=args.port, no_auth=args.no_auth)


# --- parser ---------------------------------------------------------------------------------
def add_commands(sub: Any) -> None:
    """Register the console's subcommands on ``bgworkers``' subparsers."""
    as_json = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand without --json keeps its parent's (``jobs --json runs X``);
    # the default, False, is the root parser's.
    as_json.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="one JSON object per line"
    )
    dead = sub.add_parser("dead", help="dead letters: list, show, requeue, purge")
    dead_sub = dead.add_subparsers(dest="dead_action", required=True)
    listing = dead_sub.add_parser("list", help="dead letters, newest first", parents=[as_json])
    listing.add_argument("--queue", help="only this queue")
    listing.add_argument("--actor", help="only this actor")
    listing.add_argument("--since", type=_since_argument, help="age (30m, 2h, 7d) or ISO time")
    listing.add_argument(
        "--status",
        default="dead",
        choices=("dead", "requeued", "processed", "all"),
        help="dead (default: still in the XQ), requeued, processed or all",
    )
    listing.add_argument("--limit", type=int, default=200, help="at most this many (200)")
    listing.set_defaults(handler=guarded(dead_list))
    show = dead_sub.add_parser("show", help="one dead letter with its traceback", parents=[as_json])
    show.add_argument("id", help="message id")
    show.set_defaults(handler=guarded(dead_show))
    for name, handler, text in (
        ("requeue", dead_requeue, "send back to its queue, retries reset"),
        ("purge", dead_purge, "delete from the XQ and the index"),
    ):
        action = dead_sub.add_parser(name, help=text, parents=[as_json])
        action.add_argument("ids", nargs="*", metavar="ID", help="message ids")
        action.add_argument("--all", action="store_true", help="every dead letter of --queue")
        action.add_argument("--queue", help="the queue, with --all")
        if name == "purge":
            action.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        action.set_defaults(handler=guarded(handler))

    send = sub.add_parser(
        "send", help="enqueue a message by hand, checked like the worker does", parents=[as_json]
    )
    send.add_argument("actor", help="actor name, e.g. send_email")
    send.add_argument(
        "--arg", action="append", default=[], metavar="NAME=VALUE", help="JSON or plain text"
    )
    send.set_defaults(handler=guarded(send_message))

    job = sub.add_parser(
        "jobs", help="periodic jobs; pause, resume or run one now", parents=[as_json]
    )
    job.set_defaults(handler=guarded(jobs))  # its subcommands' too: jobs() dispatches on them
    job_sub = job.add_subparsers(dest="job_action")
    pause = job_sub.add_parser(
        "pause", help="skip the job's ticks until resumed", parents=[as_json]
    )
    pause.add_argument("job")
    pause.add_argument("--reason", required=True, help="why (shown everywhere the pause is)")
    resume = job_sub.add_parser(
        "resume", help="run the job on its schedule again", parents=[as_json]
    )
    resume.add_argument("job")
    run = job_sub.add_parser("run", help="run the job now, outside its schedule", parents=[as_json])
    run.add_argument("job")
    runs = job_sub.add_parser(
        "runs", help="the job's last runs, each attempt: when, how long, error", parents=[as_json]
    )
    runs.add_argument("job")
    runs.add_argument("--limit", type=int, default=10, help="at most this many runs (10)")

    queue = sub.add_parser(
        "queues",
        help="per queue and lane: ready, delayed, dead, unacked, consumers, the oldest "
        "message's age; time waited on provider rate limits",
        parents=[as_json],
    )
    queue.set_defaults(handler=guarded(queues))

    web = sub.add_parser("console", help="the web console (see docs/console.md)")
    web.add_argument("--host", default=None, help="bind address (BGW_CONSOLE_HOST, 127.0.0.1)")
    web.add_argument("--port", type=int, default=None, help="port (BGW_CONSOLE_PORT, 9195)")
    web.add_argument(
        "--no-auth",
        action="store_true",
        help="no login (only with a loopback bind address: 127.0.0.1, ::1, localhost)",
    )
    web.set_defaults(handler=serve_console)
