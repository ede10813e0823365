"""bgworkers' middleware, one module each; ``build_broker`` in :mod:`bgworkers.stack.broker`
puts them in order (docs/architecture.md, "Middleware (in order)").

Message hooks: ``tracing`` (spans, only when ``OTEL_*`` asks), ``message_logging`` (context
and one line per message), ``metrics``, ``retry_policy`` (retry or dead-letter; what it
decided, read by the others).
Worker hooks: ``connectivity`` (RabbitMQ unreachable, said plainly), ``resources`` (shared
clients closed at shutdown), ``exporter`` (the group's metrics endpoint).
Process hooks of the worker processes a CLI starts: ``process_hooks`` (stop with the parent;
the schema and queue-type gates, the database waiter).
Middleware of one package live in it: ``ScheduleGuard`` (:mod:`bgworkers.scheduling.middleware`),
``OutboxRelay`` (:mod:`bgworkers.outbox.middleware`), ``DeadLetterIndex``
(:mod:`bgworkers.console.middleware`), ``WorkerProcessBoot`` (:mod:`bgworkers.processes.boot`).
"""
