"""The processes bgworkers starts, and what they share.

- ``boot``: the wiring of a worker, the scheduler and the ``bgworkers`` command at their start;
- ``runner``: ``bgworkers run``, the worker and the scheduler under one supervisor, and the
  process groups and parent-death signals that leave no orphaned worker;
- ``process_resources``: per-process shared clients, made on first use, closed at shutdown;
- ``diagnosis``: what went wrong at start, one line with the fix.
"""
