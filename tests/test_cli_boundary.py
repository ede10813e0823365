"""The error boundary in-process: each known condition is one line and its exit code; an
unknown error keeps its traceback. (The subprocess tests in test_cli_errors.py run the real
commands; these cover every branch quickly.)"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pika.exceptions
import pytest
from dramatiq.errors import ConnectionClosed
from sqlalchemy import text
from sqlalchemy.engine import Engine

from bgworkers import cli
from bgworkers.cli.admin import run_guarded
from bgworkers.db.engine import make_engine
from bgworkers.errors import ConfigurationError
from bgworkers.logs.loggers import reset_logging
from bgworkers.processes.diagnosis import SchemaNotReady, schema_missing
from tests.platform_helpers import free_port


def raising(exc: BaseException):  # type: ignore[no-untyped-def]
    def body() -> int:
        raise exc

    return body


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    yield
    reset_logging()  # cli.main sets up the command's logging


def unreachable_database_error() -> Exception:
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("a closed port answered")


@pytest.mark.parametrize(
    ("exc", "code", "words"),
    [
        (KeyboardInterrupt(), 130, "interrupted"),
        (ConfigurationError("invalid configuration: BGW_X: bad"), 2, "BGW_X: bad"),
        (SchemaNotReady(schema_missing("sqlite:///x.db")), 2, "run `bgworkers migrate`"),
        (pika.exceptions.ProbableAuthenticationError("ACCESS_REFUSED - Login"), 2, "password"),
        (pika.exceptions.ProbableAccessDeniedError("NOT_ALLOWED - vhost v not found"), 2, "vhost"),
        (ConnectionClosed(pika.exceptions.AMQPConnectionError("refused")), 3, "does not answer"),
    ],
)
def test_known_conditions_are_one_line(
    exc: BaseException, code: int, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_guarded(raising(exc)) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bgworkers: ") and words in err


def test_an_unreachable_database_is_code_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_guarded(raising(unreachable_database_error())) == 3
    assert "the database does not answer" in capsys.readouterr().err


def test_an_unknown_error_keeps_its_traceback() -> None:
    with pytest.raises(ValueError, match="a bug"):
        run_guarded(raising(ValueError("a bug")))


def test_schedule_and_migrate_in_process(
    sqlite_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["migrate"]) == 0
    assert "nothing to apply" in capsys.readouterr().out
    assert cli.main(["schedule"]) == 0
    assert "heartbeat" in capsys.readouterr().out


def test_run_against_a_closed_port_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bgworkers.settings import get_settings

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setenv("BGW_BROKER_URL", f"amqp://guest:guest@127.0.0.1:{port}/")
    get_settings.cache_clear()
    try:
        assert cli.main(["run"]) == 3
    finally:
        get_settings.cache_clear()
    assert "RabbitMQ does not answer" in capsys.readouterr().err
