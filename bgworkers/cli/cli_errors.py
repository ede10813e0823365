"""The ``bgworkers`` command's error boundary: one line with the fix, never a traceback.

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

import contextlib
import os
import sys
from collections.abc import Callable

from bgworkers.errors import ConfigurationError
from bgworkers.processes.diagnosis import (
    EXIT_CONFIGURATION,
    Problem,
    SchemaNotReady,
    broker_problem,
    database_problem,
)

EXIT_BROKEN_PIPE = 141
EXIT_INTERRUPTED = 130


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
