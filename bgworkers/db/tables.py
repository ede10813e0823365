"""``SQLModel.metadata`` with every table of bgworkers, for what reads the whole schema: the
migrations' environment, the per-user backup and restore, the table optimisation.

The table modules belong to packages far above ``db``: the composition root lists them
(:mod:`bgworkers.stack.tables`) and the package's ``__init__``, imported before any of its
modules, hands in their loader, as it hands the broker's wiring its builder. Importing
bgworkers loads none of them; :func:`every_table` does, on first need, in any process.

The keys below are what a table may set in its ``info`` to tell the per-user backup how to
treat it: a domain declares them next to its table, the files domain reads them when it
archives and restores a user's rows, and neither imports the other. Example::

    __table_args__ = ({"info": {SECRET_COLUMNS: ("access_token",),
                                RESTORED_VALUES: {"status": "reauth_required"}}},)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from sqlalchemy import MetaData

#: Columns holding credentials: written as null in archives, restored empty.
SECRET_COLUMNS: Final = "secret_columns"
#: For a table without ``user_id``: the column holding its owner's email address.
OWNER_EMAIL_COLUMN: Final = "backup_owner_email_column"
#: Column values a restored row gets instead of the archived ones (a connection whose
#: credentials were left out is restored as needing a new authorisation).
RESTORED_VALUES: Final = "restored_values"

_loader: Callable[[], object] | None = None


def use_loader(loader: Callable[[], object]) -> None:
    """Have :func:`every_table` call ``loader`` (which imports the table modules) first.
    One slot, since the composition root's list is the only list of table modules: a second
    call (the package reloaded) replaces the loader instead of adding a copy."""
    global _loader
    _loader = loader


def every_table() -> MetaData:
    """``SQLModel.metadata``, once every table module is imported."""
    from sqlmodel import SQLModel

    if _loader is not None:
        _loader()
    return SQLModel.metadata
