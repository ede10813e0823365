"""Firing reminders by the page, without the broker or SMTP: time, CPU and statements a page.

Seeds ``--reminders`` due reminders (half of them daily, so the next occurrence is computed,
half one-off), each of its own user, in a PostgreSQL schema of its own (on the server and
database of ``BGW_TEST_POSTGRES_URL``; dropped at the end), then fires them in pages of
``PAGE_SIZE`` with :func:`bgworkers.reminders.firing.fire_reminder_page`, one transaction a
page, as ``fire_reminder_page`` messages do (the delivery that follows in the actor is left
out: it is the email domain's). Prints per page the wall time, this process's CPU time and the
SQL statements sent (an executemany counts once), then ``name=value`` lines.

To compare two versions, run it alternately with each on ``PYTHONPATH`` (the figures move
with the machine's load: compare runs made minutes apart, and give ``uptime``).

Usage: python bench/reminder_pages.py [--reminders 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, insert, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bgworkers import migrations
from bgworkers.db.engine import make_engine
from bgworkers.reminders import firing
from bgworkers.reminders.models import Reminder
from bgworkers.users.models import User

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def own_schema(url: str) -> Iterator[Engine]:
    """A migrated schema of its own on ``url``'s database; dropped at the end."""
    schema = f"bench_pages_{uuid.uuid4().hex[:8]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in url else "?"
    engine = make_engine(f"{url}{separator}options=-csearch_path%3D{schema}")
    try:
        migrations.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def seed(engine: Engine, count: int, due: datetime, run: int) -> list[int]:
    """``count`` due reminders, each of a user of its own; returns their ids."""
    with Session(engine) as session:
        users = [
            User(email=f"r{run}u{n}@example.org", display_name=f"User {n}",
                 timezone="Europe/Paris").model_dump(exclude={"id"})
            for n in range(count)
        ]  # fmt: skip
        session.execute(insert(User), users)
        user_ids = session.exec(
            select(User.id).where(col(User.email).startswith(f"r{run}u")).order_by(col(User.id))
        ).all()
        reminders = [
            Reminder(user_id=user_id, text=f"Call the bank ({n})", timezone="Europe/Paris",
                     due_at=due, next_due_at=due,
                     recurrence="daily" if n % 2 else None).model_dump(exclude={"id"})
            for n, user_id in enumerate(user_ids)
        ]  # fmt: skip
        session.execute(insert(Reminder), reminders)
        ids = session.exec(
            select(Reminder.id)
            .where(col(Reminder.user_id).in_(user_ids))
            .order_by(col(Reminder.id))
        ).all()
        session.commit()
    return [i for i in ids if i is not None]


def fire_all(engine: Engine, ids: list[int], now: datetime) -> dict[str, float]:
    """Fire ``ids`` page by page; the medians of wall/CPU milliseconds and statements."""
    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    walls, cpus, counts, emails = [], [], [], 0
    try:
        for first in range(0, len(ids), firing.PAGE_SIZE):
            page = ids[first : first + firing.PAGE_SIZE]
            statements[0] = 0
            wall, cpu = time.perf_counter(), time.process_time()
            with Session(engine) as session:
                emails += len(
                    firing.fire_reminder_page(page, session=session, now=now, fallback=print)
                )
                session.commit()
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
            counts.append(statements[0])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert emails == len(ids), f"{emails} emails for {len(ids)} reminders"
    return {
        "wall_ms_per_page": statistics.median(walls),
        "cpu_ms_per_page": statistics.median(cpus),
        "statements_per_page": statistics.median(counts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reminders", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    url = os.environ.get("BGW_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    print(f"load: {os.getloadavg()[0]:.1f} at start; firing code: {firing.__file__}")
    rounds: list[dict[str, float]] = []
    with own_schema(url) as engine:
        for run in range(args.rounds):
            now = datetime.now(UTC)
            ids = seed(engine, args.reminders, now - timedelta(seconds=30), run)
            figures = fire_all(engine, ids, now)
            print(f"round {run}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
            rounds.append(figures)
    print(f"load: {os.getloadavg()[0]:.1f} at the end")
    for key in rounds[0]:
        print(f"{key}={statistics.median(r[key] for r in rounds):.2f}")


if __name__ == "__main__":
    main()
