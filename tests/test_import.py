"""Importing bgworkers wires the broker and actors but contacts nothing."""

import os
import subprocess
import sys


def test_import_opens_no_connection() -> None:
    env = {
        **os.environ,
        # Nothing listens on port 1; a connection attempt would fail or hang, not pass.
        "BGW_BROKER_URL": "amqp://guest:guest@127.0.0.1:1/",
        "BGW_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
    }
    code = (
        "import bgworkers, dramatiq;"
        "assert dramatiq.get_broker() is bgworkers.broker;"
        "assert bgworkers.broker.actors, 'no actors declared';"
        "assert not bgworkers.broker.connections, 'connected at import'"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
