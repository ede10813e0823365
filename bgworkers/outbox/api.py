"""``enqueue``: record a message in the caller's transaction; the relay publishes it.

Why, and when ``actor.send()`` is the better choice: docs/outbox.md. Nothing here talks to
RabbitMQ. Arguments are checked with the actor's own ``@task`` checks, so a bad call raises
:class:`~bgworkers.errors.InvalidArguments` in the caller, not later in a worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

import dramatiq
from sqlalchemy import event, insert, select
from sqlmodel import Session

from bgworkers.db.engine import insert_with_on_conflict, utcnow
from bgworkers.errors import InvalidArguments
from bgworkers.outbox.metrics import OUTBOX_METRICS
from bgworkers.outbox.models import OutboxMessage
from bgworkers.outbox.wakeup import NOTIFY
from bgworkers.tasks import check_actor_arguments
from bgworkers.tracing.spans import create_span

#: Bytes; a larger envelope is refused: messages carry ids, not documents.
MAX_BODY_BYTES = 256 * 1024
MAX_DEDUPE_KEY_LENGTH = 200
#: Rows per INSERT statement in :func:`enqueue_many`.
INSERT_CHUNK = 1_000

#: Set after a commit that wrote outbox rows, so a relay in this process publishes at once.
RELAY_WAKEUP = threading.Event()

_TABLE = OutboxMessage.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Enqueued:
    """What :func:`enqueue` did; ``duplicate``: a row with the same dedupe key existed, nothing
    was written and ``id``/``message_id`` are that row's."""

    id: int
    message_id: str
    duplicate: bool


ActorRef = dramatiq.Actor[Any, Any] | str


def enqueue(
    session: Session,
    actor_or_name: ActorRef,
    *args: Any,
    delay_ms: int | None = None,
    dedupe_key: str | None = None,
    message_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Enqueued:
    """Write one message for ``actor`` into the outbox, in ``session``'s transaction.

    ``delay_ms`` is in milliseconds; ``message_options`` are dramatiq message options
    (``max_retries``, ...). Raises :class:`InvalidArguments` (docs/outbox.md lists when).
    """
    actor = resolve_actor(actor_or_name)
    now = utcnow()
    with create_span(actor.queue_name, actor.actor_name) as trace_options:
        options = {**(message_options or {}), **trace_options}
        values = _row_values(actor, args, kwargs, now, delay_ms, dedupe_key, options)
    statement = _insert(session, ignore_duplicates=dedupe_key is not None).values(**values)
    inserted = session.execute(statement.returning(_TABLE.c.id)).first()
    _wake_relay_after_commit(session)
    if inserted is not None:
        OUTBOX_METRICS.get().enqueued.labels(actor.queue_name).inc()
        return Enqueued(id=int(inserted[0]), message_id=values["message_id"], duplicate=False)
    existing = session.execute(
        select(_TABLE.c.id, _TABLE.c.message_id).where(_TABLE.c.dedupe_key == dedupe_key)
    ).one()
    return Enqueued(id=int(existing[0]), message_id=str(existing[1]), duplicate=True)


def enqueue_many(
    session: Session,
    actor_or_name: ActorRef,
    arguments: Iterable[tuple[Any, ...]],
    *,
    dedupe_key: Callable[[tuple[Any, ...]], str | None] | None = None,
    delay_ms: int | None = None,
) -> int:
    """One message per argument tuple, inserted :data:`INSERT_CHUNK` rows per statement.

    For fan-outs: ``dedupe_key(args)`` names each message (a repeated key is skipped; None:
    no key). Returns how many rows were written.
    """
    actor = resolve_actor(actor_or_name)
    metrics = OUTBOX_METRICS.get().enqueued.labels(actor.queue_name)
    statement = _insert(session, ignore_duplicates=dedupe_key is not None)
    key_of = dedupe_key or (lambda args: None)
    written = 0
    iterator = iter(arguments)
    while chunk := list(islice(iterator, INSERT_CHUNK)):
        now = utcnow()
        with create_span(actor.queue_name, actor.actor_name, count=len(chunk)) as options:
            rows = [
                _row_values(actor, args, {}, now, delay_ms, key_of(args), options) for args in chunk
            ]
        if dedupe_key is None:
            session.execute(statement, rows)
            count = len(rows)
        else:
            count = len(session.execute(statement.returning(_TABLE.c.id), rows).all())
        written += count
        metrics.inc(count)
    if written:
        _wake_relay_after_commit(session)
    return written


def resolve_actor(actor_or_name: ActorRef) -> dramatiq.Actor[Any, Any]:
    if not isinstance(actor_or_name, str):
        return actor_or_name
    try:
        return dramatiq.get_broker().get_actor(actor_or_name)
    except dramatiq.errors.ActorNotFound:
        raise InvalidArguments(f"cannot enqueue: no actor named {actor_or_name!r}") from None


def _row_values(
    actor: dramatiq.Actor[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    now: datetime,
    delay_ms: int | None,
    dedupe_key: str | None,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    check_actor_arguments(actor, args, kwargs)
    if delay_ms is not None and delay_ms < 0:
        raise InvalidArguments(f"{actor.actor_name}: delay_ms must not be negative")
    if dedupe_key is not None and not 0 < len(dedupe_key) <= MAX_DEDUPE_KEY_LENGTH:
        raise InvalidArguments(f"{actor.actor_name}: dedupe key must have 1 to 200 characters")
    message = actor.message_with_options(args=args, kwargs=kwargs, **options)
    try:
        body = message.encode()
    except (TypeError, ValueError) as exc:
        raise InvalidArguments(f"{actor.actor_name}: arguments are not JSON: {exc}") from None
    if len(body) > MAX_BODY_BYTES:
        raise InvalidArguments(
            f"{actor.actor_name}: message of {len(body)} bytes exceeds {MAX_BODY_BYTES}; "
            "pass ids, not documents"
        )
    return {
        "queue": actor.queue_name,
        "actor": actor.actor_name,
        "message_id": message.message_id,
        "body": body.decode("utf-8"),
        "dedupe_key": dedupe_key,
        "created_at": now,
        "available_at": now + timedelta(milliseconds=delay_ms or 0),
        "published_at": None,
        "attempts": 0,
        "last_error": None,
    }


def _insert(session: Session, *, ignore_duplicates: bool) -> Any:
    if not ignore_duplicates:
        return insert(_TABLE)
    make = insert_with_on_conflict(session.get_bind().dialect.name)
    return make(_TABLE).on_conflict_do_nothing(index_elements=["dedupe_key"])


def _wake_relay_after_commit(session: Session) -> None:
    """Wake this process's relay after the commit, and on PostgreSQL every listening relay
    (:mod:`bgworkers.outbox.wakeup`): one notification per transaction.

    Why per savepoint: the flag must say whether rows are still in the transaction. Each
    write notes the transaction (or savepoint) it happened in; rolling back a savepoint drops
    only the notes made inside it (and its own ``NOTIFY``), so rows written before it still
    wake the relay, and a row written after it notifies again.
    """
    if not session.info.get("bgw_outbox_listening"):
        event.listen(session, "after_commit", _on_commit)
        event.listen(session, "after_rollback", _on_rollback)
        event.listen(session, "after_soft_rollback", _on_soft_rollback)
        session.info["bgw_outbox_listening"] = True
    current = session.get_nested_transaction() or session.get_transaction()
    written_in: list[Any] = session.info.setdefault(_WRITTEN_IN, [])
    if not any(_within(current, noted) for noted in written_in):
        if session.get_bind().dialect.name == "postgresql":
            session.execute(NOTIFY)
        written_in.append(current)


#: ``session.info`` key: the transactions and savepoints that wrote outbox rows (and notified).
_WRITTEN_IN = "bgw_outbox_written_in"


def _within(transaction: Any, outer: Any) -> bool:
    """``transaction`` is ``outer`` or a savepoint inside it."""
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


def _on_commit(session: Session) -> None:
    if session.info.pop(_WRITTEN_IN, None):
        RELAY_WAKEUP.set()


def _on_rollback(session: Session) -> None:
    if not session.in_transaction():  # the whole transaction, not a savepoint
        session.info.pop(_WRITTEN_IN, None)


def _on_soft_rollback(session: Session, previous_transaction: Any) -> None:
    """Forget the rows written inside the savepoint (or transaction) just rolled back."""
    written_in: list[Any] | None = session.info.get(_WRITTEN_IN)
    if written_in:
        written_in[:] = [t for t in written_in if not _within(t, previous_transaction)]
