"""Emails queued in one transaction leave as pages: one message per :data:`PAGE_SIZE` emails.

Why: an application that queues many emails in one transaction (``enqueue_email`` in a loop)
got one ``send_email`` message per email. Each was an outbox row for the relay to publish, a
message for a worker to take and a claim of its own, and together they cost more than the
SMTP conversations: plain email went out at a third of what the SMTP server takes. Here
``enqueue_email`` only notes the new email's id on the session; when the transaction
commits, the ids become ``send_email_page`` messages of up to :data:`PAGE_SIZE` ids, written
in that same transaction (the message outbox), so "the email is queued" and "its message
will be delivered" stay one fact. A transaction that queued a single email gets its
``send_email`` message, as before.

Savepoints: an email queued in a savepoint that is rolled back (or inside one that is) is
forgotten with it, so no message names it: an orphan ``send_email`` would hold the dedupe
key of its idempotency key, and the email queued again later with that key would get no
message of its own. Nothing is noted past the end of the transaction (commit or rollback).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlmodel import Session

#: Emails per ``send_email_page`` message (about 1 ms each on a local server).
PAGE_SIZE = 50

_NOTED = "bgw_email_pages"


@dataclass
class _Noted:
    """The emails a transaction queued, and how to record their messages at its commit."""

    record_one: Callable[[Session, int, str], None]
    record_many: Callable[[Session, list[int]], None]
    #: Each email's id, key, and the savepoints open when it was queued (innermost first).
    emails: list[tuple[int, str, tuple[Any, ...]]] = field(default_factory=list)


def note_for_page(
    session: Session,
    email_id: int,
    key: str,
    *,
    record_one: Callable[[Session, int, str], None],
    record_many: Callable[[Session, list[int]], None],
) -> None:
    """Note a new email (its id and idempotency key) to be sent when ``session`` commits.

    At the commit, ``record_many(session, email_ids)`` records one message per page of the
    ids (:func:`pages_of`), or, when the transaction queued one email,
    ``record_one(session, email_id, key)`` records its own message; both in the committing
    transaction.
    """
    noted: _Noted | None = session.info.get(_NOTED)
    if noted is None:
        if not event.contains(session, "before_commit", _record_at_commit):
            event.listen(session, "before_commit", _record_at_commit)
            event.listen(session, "after_transaction_end", _forget_at_end)
            event.listen(session, "after_soft_rollback", _forget_savepoint)
        noted = session.info[_NOTED] = _Noted(record_one=record_one, record_many=record_many)
    noted.emails.append((email_id, key, _savepoints(session)))


def pages_of(email_ids: list[int], size: int = PAGE_SIZE) -> list[list[int]]:
    """``email_ids`` cut into lists of at most ``size``, in order."""
    return [email_ids[n : n + size] for n in range(0, len(email_ids), size)]


def _record_at_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint's release: the transaction goes on
        return
    noted: _Noted | None = session.info.pop(_NOTED, None)
    if noted is None or not noted.emails:
        return
    if len(noted.emails) == 1:
        [(email_id, key, _)] = noted.emails
        noted.record_one(session, email_id, key)
    else:
        noted.record_many(session, [email_id for email_id, _, _ in noted.emails])


def _forget_at_end(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the transaction itself, not a savepoint, has ended
        session.info.pop(_NOTED, None)


def _savepoints(session: Session) -> tuple[Any, ...]:
    transaction = session.get_nested_transaction()
    open_: list[Any] = []
    while transaction is not None and transaction.nested:
        open_.append(transaction)
        transaction = transaction.parent
    return tuple(open_)


def _forget_savepoint(session: Session, rolled_back: Any) -> None:
    """Forget the emails queued in a savepoint rolled back (its rows are gone)."""
    noted: _Noted | None = session.info.get(_NOTED)
    if noted is None or not rolled_back.nested:
        return
    noted.emails = [email for email in noted.emails if rolled_back not in email[2]]
