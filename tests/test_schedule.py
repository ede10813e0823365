"""The schedule table and the declared actors agree, both ways.

Every periodic actor of bgworkers' actor modules has a line in ``bgworkers/scheduling/schedule.py``
and runs on exactly that cron line (through :class:`CronPeriod`, the option periodiq reads), and
every line of the table names a declared periodic actor. Fan-out jobs say how they spread.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import bgworkers
from bgworkers.scheduling.cron import CronExpression
from bgworkers.scheduling.periodic import CronPeriod
from bgworkers.scheduling.schedule import SCHEDULE


def declared_periodic_actors() -> dict[str, CronPeriod]:
    for module in bgworkers.ACTOR_MODULES:
        importlib.import_module(module)
    found = {}
    for name in bgworkers.broker.get_declared_actors():
        actor = bgworkers.broker.get_actor(name)
        if actor.fn.__module__ in bgworkers.ACTOR_MODULES and "periodic" in actor.options:
            found[name] = actor.options["periodic"]
    return found


def test_every_periodic_actor_runs_on_its_table_line() -> None:
    table = {entry.actor_name: entry for entry in SCHEDULE}
    for name, period in declared_periodic_actors().items():
        assert name in table, (
            f"periodic actor {name} has no line in bgworkers/scheduling/schedule.py"
        )
        assert isinstance(period, CronPeriod), f"{name}: periodic option is not a CronPeriod"
        assert period.job == table[name]
        assert period.cron == table[name].cron


def test_every_table_line_has_a_declared_periodic_actor() -> None:
    declared = declared_periodic_actors()
    missing = [entry.actor_name for entry in SCHEDULE if entry.actor_name not in declared]
    assert missing == [], f"schedule entries without a periodic actor: {missing}"


def test_table_lines_are_valid_and_unique() -> None:
    names = [entry.actor_name for entry in SCHEDULE]
    assert len(names) == len(set(names))
    for entry in SCHEDULE:
        CronExpression.parse(entry.cron)
        assert entry.catch_up_window.total_seconds() >= 0
    per_user = {e.actor_name for e in SCHEDULE if e.fan_out}
    assert per_user == {
        "send_daily_email_summary",
        "backup_user_data",
        "sync_calendar_events",
        "sync_notion_pages",
    }


def test_catch_up_is_the_last_periodic_actor_sent_in_a_tick() -> None:
    """periodiq sends a tick's due actors in ``broker.actors`` order (declaration order).

    The catch-up job must come last: once its tick is sent, every other job of that tick was
    sent before it, so a scheduler that dies part-way through a tick leaves a gap that the
    next catch-up sees.
    """
    # In a fresh process, as the scheduler's is: in this one, a test that imported the
    # scheduling actors before reading ``bgworkers.broker`` declared the catch-up job first.
    code = (
        "import bgworkers;"
        "print(' '.join(name for name, actor in bgworkers.broker.actors.items()"
        " if 'periodic' in actor.options))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    periodic = run.stdout.split()
    assert set(periodic) == set(declared_periodic_actors())
    assert periodic[-1] == "catch_up_missed_ticks", periodic
