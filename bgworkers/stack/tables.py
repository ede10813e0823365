"""Every module that declares tables, imported so ``SQLModel.metadata`` knows them all.

Imported on first need by :func:`bgworkers.db.tables.every_table` (the package's ``__init__``
hands it the loader), for the migrations, the backup and restore, the table optimisation. Add a
domain's table module to :data:`TABLE_MODULES` when it gets one (``tests/test_schema.py``
fails on one left out).
"""

from __future__ import annotations

from types import ModuleType

import bgworkers.console.models
import bgworkers.email.models
import bgworkers.maintenance.models
import bgworkers.metrics.models
import bgworkers.outbox.models
import bgworkers.reminders.models
import bgworkers.scheduling.models
import bgworkers.scheduling.pauses
import bgworkers.sync.models
import bgworkers.users.models

TABLE_MODULES: tuple[ModuleType, ...] = (
    bgworkers.users.models,
    bgworkers.outbox.models,
    bgworkers.scheduling.models,
    bgworkers.scheduling.pauses,
    bgworkers.email.models,
    bgworkers.sync.models,
    bgworkers.reminders.models,
    bgworkers.maintenance.models,
    bgworkers.metrics.models,
    bgworkers.console.models,
)
