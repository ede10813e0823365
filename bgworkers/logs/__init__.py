"""Logging: bgworkers' loggers and the set-up of bgworkers' own processes.

- ``loggers``: ``get_logger``, ``configure_logging``, the JSON/console rendering;
- ``log_writer``: a worker's INFO lines written in batches;
- ``log_noise``: the libraries' repeated lines rate-limited while RabbitMQ is away;
- ``redaction``: secrets scrubbed from what is logged or stored, at a bounded cost;
- ``failure_reasons``: a failure in one short line (a database error without its statement);
- ``intervals``: at most one line per interval for a condition that repeats.
"""
