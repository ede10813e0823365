"""Which failures are outages: a part we depend on was away or slow, not the item wrong.

Why its own module: both the per-reminder give-up (:mod:`bgworkers.reminders.giving_up`) and
the page split (:mod:`bgworkers.reminders.splitting`) sort failures this way, and the split
must not import the reminder actors' modules (importing one declares actors, which makes the
broker) only to ask this question.
"""

from __future__ import annotations

from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bgworkers.errors import TransientError

#: OperationalError covers a lost connection, a refused one, a deadlock or a serialization
#: failure; a time limit is most often a lock or a database that stopped answering.
_OUTAGES = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeout,
    BrokerConnectionError,
    TransientError,
    ConnectionError,
    TimeoutError,
    TimeLimitExceeded,
)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database, the broker or the network failed us."""
    if isinstance(exc, _OUTAGES):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
