"""The console overview says why work waits: lanes, consumers, age, provider rate limits."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session

import bgworkers
from bgworkers.console.operations import Console
from bgworkers.console.overview import read_overview
from bgworkers.monitoring.queue_depth import QueueDepth
from bgworkers.settings import get_settings
from bgworkers.sync.models import RateLimitSlot


def test_the_overview_has_lanes_and_the_time_waited_on_rate_limits(
    sqlite_engine: Engine,
) -> None:
    with Session(sqlite_engine) as session:
        session.add(RateLimitSlot(key="notion:token:a", next_at=0, paused_until=0, waited_s=12))
        session.commit()
    console = Console(
        settings=get_settings(), broker=bgworkers.broker, engine=sqlite_engine, who="test"
    )
    depths = [QueueDepth("urgent", 0, 0, 0, 0, consumers=1, oldest_age_s=0.0)]

    view = read_overview(console, read_queues=lambda: depths)

    assert view.database_error is None
    assert [(q.queue, q.lane) for q in view.queues] == [("urgent", "urgent")]
    [notion] = view.rate_limits
    assert (notion.provider, notion.waited_s, notion.credentials) == ("notion", 12.0, 1)
