"""Scheduling you can trust, on top of ``periodiq bgworkers``.

periodiq stays the process operators run; bgworkers replaces the parts of it that drop or
duplicate work (see ``docs/scheduling.md``):

* :mod:`~bgworkers.scheduling.schedule`: the schedule table, one cron line per periodic job;
* :mod:`~bgworkers.scheduling.cron`: croniter's ticks in the configured time zone
  (``BGW_TIMEZONE``) with an explicit daylight-saving policy, independent of the machine's zone;
* :mod:`~bgworkers.scheduling.periodic`: the object periodiq's scheduler reads from each
  actor's ``periodic`` option;
* :mod:`~bgworkers.scheduling.middleware`: the worker side: one run per (job, tick), no
  overlap, outcome recorded; retries of a periodic message run (periodiq's middleware acked
  them unrun);
* :mod:`~bgworkers.scheduling.catch_up`: missed ticks re-sent within each job's window;
* :mod:`~bgworkers.scheduling.report`: ``bgworkers schedule``;
* :mod:`~bgworkers.scheduling.resilient_sending`: the scheduler process keeps sending through
  a RabbitMQ outage, and is set up when periodiq's CLI loads bgworkers.
"""
