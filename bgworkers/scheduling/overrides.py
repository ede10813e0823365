"""Checks ``BGW_SCHEDULE_OVERRIDES``: per-job cron overrides, or ``off`` to disable a job.

Why checked at start: a typo in a job name or a cron field would otherwise leave a job running
on its old schedule (or not at all) without a word. ``import bgworkers`` calls
:func:`check_overrides` right after reading the settings, so every process refuses a bad value
before it declares an actor. The check lives here, not in :mod:`bgworkers.settings`, so that
the settings depend on nothing of the schedule (which itself reads the settings).
"""

from __future__ import annotations

from bgworkers.errors import ConfigurationError
from bgworkers.scheduling.cron import CronError, CronExpression
from bgworkers.scheduling.periodic import OFF


def check_overrides(overrides: dict[str, str]) -> dict[str, str]:
    """Return ``overrides`` unchanged if every key is a scheduled job and every value valid.

    Raises :class:`ConfigurationError` naming ``BGW_SCHEDULE_OVERRIDES`` and each problem.
    """
    from bgworkers.scheduling.schedule import SCHEDULE

    known = {entry.actor_name for entry in SCHEDULE}
    problems: list[str] = []
    for name, value in overrides.items():
        if name not in known:
            problems.append(f"{name!r} is not in the schedule table ({', '.join(sorted(known))})")
            continue
        if value.strip().lower() == OFF:
            continue
        try:
            CronExpression.parse(value)
        except CronError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise ConfigurationError(
            f"invalid configuration: BGW_SCHEDULE_OVERRIDES: {'; '.join(problems)}"
        )
    return overrides
