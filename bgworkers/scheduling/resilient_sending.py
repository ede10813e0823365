"""The start of a ``periodiq bgworkers`` scheduler process, whose sends are retried with
backoff, so the scheduler keeps running while RabbitMQ is away.

periodiq has no process hook: :func:`bgworkers.stack.wire_for_cli` calls
:func:`boot_scheduler` when periodiq's CLI is the one loading bgworkers.

Why: periodiq's ``Scheduler.send_actors`` lets a failed publish escape its loop; the process
then exits with "Unhandled error" and an invitation to file an issue with periodiq, for what is
an outage of our broker. Here each due actor's send is retried with a growing delay until
RabbitMQ takes it, with one line per condition and interval saying what to fix; the message
keeps the tick it was due at (docs/scheduling.md, guarantee 7).

How: :func:`install` replaces ``periodiq.Scheduler.send_actors`` (a method of the class
periodiq's CLI instantiates) through :mod:`bgworkers.compat.periodiq`, whose contract test
fails when periodiq's own changes.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from bgworkers.logs.intervals import LogIntervalsByKey
from bgworkers.logs.loggers import get_logger
from bgworkers.processes.boot import boot_process
from bgworkers.processes.diagnosis import broker_problem
from bgworkers.settings import Settings

log = get_logger("bgworkers.scheduling")

#: Seconds before the second attempt, doubled after each failure up to MAX_DELAY_S.
FIRST_DELAY_S = 1.0
#: Seconds; the longest wait between two attempts.
MAX_DELAY_S = 30.0
#: Seconds between two log lines about the same condition.
LOG_INTERVAL_S = 60.0


def send_with_backoff(
    send: Callable[[], Any],
    *,
    job: str,
    broker_url: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_failure: Callable[[], None] = lambda: None,
) -> int:
    """Call ``send`` until it succeeds; return how many attempts failed first.

    ``on_failure`` is called after each failed attempt (a metric that moves during the outage,
    not only once it is over)."""
    import pika.exceptions
    from dramatiq.errors import BrokerConnectionError as DramatiqConnectionError

    failures = 0
    delay = FIRST_DELAY_S
    notices = LogIntervalsByKey(LOG_INTERVAL_S, clock=clock)
    while True:
        try:
            send()
        except (DramatiqConnectionError, pika.exceptions.AMQPError, OSError) as exc:
            failures += 1
            on_failure()
            problem = broker_problem(exc.__cause__ or exc, broker_url)
            if notices.of(problem.condition).due():
                log.error(
                    problem.condition,
                    job=job,
                    retry_in_s=delay,
                    failed_attempts=failures,
                    hint=f"{problem.message}; the scheduler keeps retrying",
                )
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)
            continue
        if failures:
            log.info("scheduler_send_recovered", job=job, failed_attempts=failures)
        return failures


def boot_scheduler(
    start_scheduler_endpoint: Callable[[Settings], object], settings: Settings | None = None
) -> None:
    """The scheduler's logging, its ``/metrics``, ``/healthz`` and ``/readyz`` endpoint, and
    sends retried while RabbitMQ is away (:func:`install`).

    ``start_scheduler_endpoint``: handed in by the stack, since what the endpoint serves
    (readiness checks, the registry) is put together in a package above this one.
    """
    settings = boot_process(settings, service="bgworkers-scheduler")
    install(settings.broker_url.get_secret_value())
    start_scheduler_endpoint(settings)


def install(broker_url: str) -> None:
    """Make periodiq's scheduler retry its sends instead of exiting (see the module doc), and
    count them (:data:`~bgworkers.scheduling.metrics.SCHEDULER_METRICS`)."""
    import periodiq

    from bgworkers.compat.periodiq import replace_send_actors
    from bgworkers.scheduling.metrics import SCHEDULER_METRICS
    from bgworkers.scheduling.schedule import SCHEDULE

    SCHEDULER_METRICS.get().zero([job.actor_name for job in SCHEDULE])

    def send_actors(self: Any, actors: list[Any], now: Any) -> None:
        metrics = SCHEDULER_METRICS.get()
        metrics.wakeup.set(now.timestamp())
        now_str = str(now)
        for actor in actors:
            periodiq.logger.info("Scheduling %s at %s.", actor, now_str)
            send_with_backoff(
                functools.partial(actor.send_with_options, scheduled_at=now_str),
                job=actor.actor_name,
                broker_url=broker_url,
                on_failure=metrics.send_failures.labels(actor.actor_name).inc,
            )
            metrics.ticks_sent.labels(actor.actor_name).inc()
            metrics.last_sent.labels(actor.actor_name).set(now.timestamp())
        upcoming = [a.options["periodic"].next_valid_date(now) for a in self.actors]
        if upcoming:
            metrics.next_wakeup.set(min(upcoming).timestamp())

    replace_send_actors(send_actors)
