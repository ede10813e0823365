"""The operations console: see, fix and replay work, from ``bgworkers ...`` and a web page.

* :mod:`~bgworkers.console.dead_letters`: the dead-letter index (one row per dead-lettered
  message, written by :class:`~bgworkers.console.middleware.DeadLetterIndex`), pruned with
  the ``.XQ`` queues' 7-day TTL;
* :mod:`~bgworkers.console.actors`: ``prune_dead_letters``, the index's hourly upkeep;
* :mod:`~bgworkers.console.xq`: requeue and purge messages kept in ``<queue>.XQ``;
* :mod:`~bgworkers.console.audit`: every action, who and when;
* :mod:`~bgworkers.console.operations`: every action (requeue, purge, enqueue by hand, run,
  pause and resume periodic jobs), for the CLI and the web; pauses themselves live in
  :mod:`bgworkers.scheduling.pauses`;
* :mod:`~bgworkers.console.jobs` and :mod:`~bgworkers.console.overview`: what the pages and
  commands show of the jobs, the queues and the system;
* :mod:`~bgworkers.console.commands`: the ``bgworkers`` subcommands;
* :mod:`~bgworkers.console.web`: the web console (``bgworkers console``).

See ``docs/console.md``.
"""
