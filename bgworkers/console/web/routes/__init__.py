"""The console's routes, one module per page group; each has ``routes(site) -> list[Route]``.

* :mod:`~.login`: ``/login`` and ``/logout``;
* :mod:`~.overview`: ``/``, queues, workers and jobs at a glance;
* :mod:`~.dead_letters`: ``/dead``, one dead letter, requeue and purge;
* :mod:`~.jobs`: ``/jobs``, pause, resume and run now;
* :mod:`~.audit`: ``/audit``, who did what.
"""
