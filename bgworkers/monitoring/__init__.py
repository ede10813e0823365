"""Monitoring: what the endpoints, ``bgworkers health`` and the dashboards report.

- ``queue_depth``: queue depths read from RabbitMQ's management API, as gauges;
- ``health``: liveness and readiness (``/healthz``, ``/readyz``);
- ``endpoints``: what each process's ``/metrics`` serves (handed to it by the stack);
- ``job_health``: per periodic job, its last success and how often it should succeed;
- ``process_stats``: memory and CPU of the worker group's processes;
- ``report``: ``bgworkers health``.

The Grafana dashboards are built by ``tools/``; a reading refreshed in the background is
:mod:`bgworkers.metrics.reading`.
"""
