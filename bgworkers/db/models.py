"""Every table of bgworkers, loaded so ``SQLModel.metadata`` knows them all.

The migrations' environment, the backup and the table optimisation import this module; add
each domain's ``models`` module to :data:`TABLE_MODULES` when the domain gets tables
(``tests/test_schema.py`` fails on a table module left out).

Why by name: the table modules belong to packages far above ``db``, which each import ``db``;
listing them here by name keeps ``db`` below them (no import cycle) while one import of this
module still loads every table, as before.
"""

from __future__ import annotations

import importlib

#: Each module that declares ``table=True`` models.
TABLE_MODULES: tuple[str, ...] = (
    "bgworkers.users.models",
    "bgworkers.outbox.models",
    "bgworkers.scheduling.models",
    "bgworkers.scheduling.pauses",
    "bgworkers.email.models",
    "bgworkers.sync.models",
    "bgworkers.reminders.models",
    "bgworkers.maintenance.models",
    "bgworkers.metrics.models",
    "bgworkers.console.models",
)

for _module in TABLE_MODULES:
    importlib.import_module(_module)
