"""Database helpers shared by both providers: failure bookkeeping and the fan-out query."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from sqlmodel import Session, col, select

from bgworkers.sync.models import (
    STATUS_ACTIVE,
    STATUS_REAUTH_REQUIRED,
    CalendarConnection,
    NotionConnection,
)

Connection = type[CalendarConnection] | type[NotionConnection]


def mark_failed(
    session: Session, model: Connection, user_id: int, *, error: str, now: datetime, reauth: bool
) -> None:
    """Record a permanent failure on the user's connection and commit it.

    ``reauth`` takes the connection out of the periodic fan-out until the application stores
    new credentials and sets it ``active`` again; other permanent errors are only recorded, so
    the next scheduled run tries again (a 404 calendar may be fixed by the user meanwhile).
    """
    connection = session.exec(select(model).where(model.user_id == user_id)).first()
    if connection is None:
        return
    connection.last_error = error[:500]
    connection.last_error_at = now
    if reauth:
        connection.status = STATUS_REAUTH_REQUIRED
    connection.updated_at = now
    session.add(connection)
    session.commit()


def active_user_batches(
    session: Session, model: Connection, *, batch_size: int
) -> Iterator[list[int]]:
    """Ids of users with an active connection, ascending, ``batch_size`` at a time.

    Keyset pagination (``user_id > last``) keeps each query small however many users exist.
    """
    last = 0
    while True:
        ids = list(
            session.exec(
                select(model.user_id)
                .where(col(model.status) == STATUS_ACTIVE, col(model.user_id) > last)
                .order_by(col(model.user_id))
                .limit(batch_size)
            )
        )
        if not ids:
            return
        yield ids
        last = ids[-1]


def fan_out(
    session: Session,
    model: Connection,
    *,
    batch_size: int,
    send_batch: Callable[[list[int]], None],
) -> int:
    """Hand the users with an active connection to ``send_batch``, batch by batch.

    ``send_batch`` records their messages in the session's transaction (the outbox), so
    nothing is sent if it rolls back. Returns how many users were scheduled.
    """
    total = 0
    for ids in active_user_batches(session, model, batch_size=batch_size):
        send_batch(ids)
        total += len(ids)
    return total
