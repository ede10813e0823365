"""What went wrong at start, in one line with the fix: the vocabulary of first-day errors.

Why one place: the ``bgworkers`` command, the worker's boot check, the scheduler's retries and
``bgworkers health`` meet the same few conditions (RabbitMQ unreachable, credentials or vhost
refused, database unreachable or missing, schema missing or outdated, a bad setting) and must
name them the same way. Each :class:`Problem` carries a stable ``condition`` (for logs and
rate limits), the exit code (:data:`EXIT_CONFIGURATION` when a person must change something,
:data:`EXIT_UNAVAILABLE` when waiting or starting a service helps) and a sentence that says
what to do. URLs are shown without their password.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from bgworkers.errors import ConfigurationError
from bgworkers.logs.loggers import redact_text

#: A setting, a missing vhost or database, an unmigrated schema: a restart cannot fix it.
EXIT_CONFIGURATION = 2
#: A service we need (RabbitMQ, the database) does not answer (yet): retrying later may work.
#: The same code from every ``bgworkers`` command, and the one dramatiq's own command gives for
#: a broker it cannot reach, so a script tells "try again later" from every other failure.
EXIT_UNAVAILABLE = 3


@dataclass(frozen=True)
class Problem:
    condition: str
    exit_code: int
    message: str


class SchemaNotReady(ConfigurationError):
    """The database's schema is not the one this version of bgworkers needs."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _broker_place(url: str) -> str:
    try:
        import pika

        params = pika.URLParameters(url.split(";")[0])
    except Exception:  # noqa: BLE001 - a malformed URL: show it redacted rather than fail
        return redact_text(url)
    place = f"{params.host}:{params.port} (vhost {params.virtual_host!r})"
    others = len([part for part in url.split(";") if part.strip()]) - 1
    return f"{place} and {others} other node(s)" if others > 0 else place


def broker_problem(exc: BaseException, url: str) -> Problem:
    """Name a failure to connect to RabbitMQ: unreachable, credentials, vhost or permissions."""
    import pika.exceptions

    place = _broker_place(url)
    text = str(exc)
    auth_errors = (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError)
    if isinstance(exc, auth_errors) or "ACCESS_REFUSED - Login" in text:
        return Problem(
            "broker_auth_refused",
            EXIT_CONFIGURATION,
            f"RabbitMQ at {place} refused the user name or password of BGW_BROKER_URL; "
            "fix them in BGW_BROKER_URL (guest/guest works only from the same machine)",
        )
    if "vhost" in text and "not found" in text:
        vhost = pika.URLParameters(url.split(";")[0]).virtual_host
        return Problem(
            "broker_vhost_missing",
            EXIT_CONFIGURATION,
            f"RabbitMQ at {place} has no vhost {vhost!r}; create it "
            f"(rabbitmqctl add_vhost {vhost} && rabbitmqctl set_permissions -p {vhost} "
            "<user> '.*' '.*' '.*') or fix the path of BGW_BROKER_URL",
        )
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError) or "NOT_ALLOWED" in text:
        return Problem(
            "broker_access_refused",
            EXIT_CONFIGURATION,
            f"RabbitMQ at {place} refused access to the vhost for this user; grant it "
            "(rabbitmqctl set_permissions -p <vhost> <user> '.*' '.*' '.*')",
        )
    return Problem(
        "broker_unreachable",
        EXIT_UNAVAILABLE,
        f"RabbitMQ does not answer at {place} ({_short_reason(exc)}); start it (make broker "
        "does on Debian: deploy/ensure-rabbitmq.sh) or point BGW_BROKER_URL at a running broker",
    )


_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_level = logging.NOTSET


@contextmanager
def quiet_pika() -> Iterator[None]:
    """Raise pika's log level while probing (nested and thread-safe; restored after)."""
    global _quiet_depth, _saved_level
    logger = logging.getLogger("pika")
    with _quiet_lock:
        if _quiet_depth == 0:
            _saved_level = logger.level
            logger.setLevel(logging.CRITICAL)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                logger.setLevel(_saved_level)


def database_place(url: str) -> str:
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - a malformed URL: show it redacted rather than fail
        return redact_text(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database}"
    return f"{parsed.get_backend_name()} at {parsed.host}:{parsed.port or 5432}/{parsed.database}"


def database_problem(exc: BaseException, url: str) -> Problem | None:
    """Name a database failure at start; None when it is none of the known conditions."""
    if not isinstance(exc, DBAPIError):
        return None
    place = database_place(url)
    text = str(exc.orig) if exc.orig is not None else str(exc)
    lowered = text.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return schema_missing(url)
    if "database" in lowered and "does not exist" in lowered:
        return Problem(
            "database_missing",
            EXIT_CONFIGURATION,
            f"the database of BGW_DATABASE_URL does not exist ({place}); create it "
            "(createdb) or fix BGW_DATABASE_URL",
        )
    if "unable to open database file" in lowered:
        return Problem(
            "database_unusable",
            EXIT_CONFIGURATION,
            f"cannot open the {place}; check that its directory exists and is writable, "
            "or set BGW_DATA_DIR / BGW_DATABASE_URL",
        )
    refused = "password authentication failed" in lowered or (
        "role" in lowered and "does not exist" in lowered
    )
    if refused:
        return Problem(
            "database_auth_refused",
            EXIT_CONFIGURATION,
            f"the database refused the user or password of BGW_DATABASE_URL ({place})",
        )
    if isinstance(exc, OperationalError | ProgrammingError):
        return Problem(
            "database_unreachable",
            EXIT_UNAVAILABLE,
            f"the database does not answer ({place}: {_first_line(text)}); start it or fix "
            "BGW_DATABASE_URL",
        )
    return None


def schema_missing(url: str) -> Problem:
    return Problem(
        "schema_missing",
        EXIT_CONFIGURATION,
        f"the database has no bgworkers schema yet ({database_place(url)}); "
        "run `bgworkers migrate` first",
    )


def _short_reason(exc: BaseException) -> str:
    text = redact_text(f"{exc!r} {exc}")
    reasons = {
        "ConnectionRefusedError": "connection refused",
        "TimeoutError": "timed out",
        "timed out": "timed out",
        "gaierror": "unknown host name",
        "No route to host": "no route to host",
    }
    for marker, reason in reasons.items():
        if marker in text:
            return reason
    return _first_line(f"{type(exc).__name__}: {exc}")


def _first_line(text: str) -> str:
    line = redact_text(text.strip().splitlines()[0]) if text.strip() else ""
    return line[:200]
