"""Every table of bgworkers, imported so ``SQLModel.metadata`` knows them all.

The migrations' environment and the schema test import this module; add each domain's
``models`` module here when the domain gets tables.
"""

from __future__ import annotations

from bgworkers.console import models as console_models  # noqa: F401
from bgworkers.email import models as email_models  # noqa: F401
from bgworkers.maintenance import models as maintenance_models
from bgworkers.monitoring import models as monitoring_models  # noqa: F401
from bgworkers.outbox import models as outbox_models  # noqa: F401
from bgworkers.reminders import models as reminders_models  # noqa: F401
from bgworkers.scheduling import models as scheduling_models  # noqa: F401
from bgworkers.scheduling import pauses as scheduling_pauses  # noqa: F401
from bgworkers.sync import models as sync_models  # noqa: F401
from bgworkers.users import models as users_models

__all__ = ["maintenance_models", "users_models"]
