"""The cluster test's actor: each message leaves one countable row in PostgreSQL.

Imported by the worker processes (``dramatiq bgworkers tests.cluster.effects``) and by the
test, which sends ``record_effect`` messages. A first run of item ``n`` inserts its row into
``cluster_effects``; a run that finds the row already there (a redelivery, a duplicate send)
changes nothing there and is counted in ``cluster_duplicates`` instead: that is the actor's
idempotency, and the count of what it absorbed. ``fail_first`` items raise a transient error
on their first attempt, so they go through ``cluster_probe.DQ`` as retries.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.middleware import CurrentMessage
from sqlalchemy import text
from sqlalchemy.engine import Connection

import bgworkers
from bgworkers.db.engine import session_scope
from bgworkers.errors import TransientError

QUEUE = "cluster_probe"
TABLES = (
    "CREATE TABLE cluster_effects (item integer PRIMARY KEY, host text NOT NULL,"
    " attempt integer NOT NULL, redelivered boolean NOT NULL,"
    " done_at timestamptz NOT NULL DEFAULT clock_timestamp())",
    "CREATE TABLE cluster_duplicates (id serial PRIMARY KEY, item integer NOT NULL,"
    " host text NOT NULL, redelivered boolean NOT NULL,"
    " seen_at timestamptz NOT NULL DEFAULT clock_timestamp())",
)


def create_tables(connection: Connection) -> None:
    for statement in TABLES:
        connection.execute(text(statement))


@dramatiq.actor(
    broker=bgworkers.broker,
    actor_name="record_effect",
    queue_name=QUEUE,
    max_retries=10,
    min_backoff=500,
    max_backoff=2_000,
    time_limit=30_000,
)
def record_effect(item: int, fail_first: bool = False) -> None:
    message = CurrentMessage.get_current_message()
    attempt = message.options.get("retries", 0) if message is not None else 0
    redelivered = bool(getattr(message, "redelivered", False))
    if fail_first and attempt == 0:
        raise TransientError("first attempt fails on purpose")
    values = {
        "item": item,
        "host": os.environ.get("BGW_TEST_HOST", "test"),
        "attempt": attempt,
        "redelivered": redelivered,
    }
    with session_scope() as session:
        inserted = session.execute(
            text(
                "INSERT INTO cluster_effects (item, host, attempt, redelivered)"
                " VALUES (:item, :host, :attempt, :redelivered) ON CONFLICT (item) DO NOTHING"
            ),
            values,
        ).rowcount  # type: ignore[attr-defined]
        if not inserted:
            session.execute(
                text(
                    "INSERT INTO cluster_duplicates (item, host, redelivered)"
                    " VALUES (:item, :host, :redelivered)"
                ),
                values,
            )
