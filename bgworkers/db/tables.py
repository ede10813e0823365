"""``SQLModel.metadata`` with every table of bgworkers, for what reads the whole schema: the
migrations' environment, the per-user backup and restore, the table optimisation.

The table modules belong to packages far above ``db``: the composition root lists them
(:mod:`bgworkers.stack.tables`) and the package's ``__init__``, imported before any of its
modules, hands in their loader, as it hands the broker's wiring its builder. Importing
bgworkers loads none of them; :func:`every_table` does, on first need, in any process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import MetaData

_loaders: list[Callable[[], object]] = []


def use_loader(loader: Callable[[], object]) -> None:
    """Have :func:`every_table` call ``loader`` (which imports the table modules) first."""
    _loaders.append(loader)


def every_table() -> MetaData:
    """``SQLModel.metadata``, once every table module is imported."""
    from sqlmodel import SQLModel

    for load in _loaders:
        load()
    return SQLModel.metadata
