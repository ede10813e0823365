"""bgworkers' middleware; ``build_broker`` in :mod:`bgworkers.stack.broker` puts them in order
(docs/architecture.md, "Middleware (in order)").

Message hooks, one module each: ``tracing`` (spans, only when ``OTEL_*`` asks),
``message_logging`` (context and one line per message), ``metrics``, ``retry_policy`` (retry
or dead-letter; what it decided, read by the others). ``worker_hooks``: RabbitMQ unreachable
said plainly, shared clients closed at shutdown, the group's metrics endpoint.
``process_hooks``, of the worker processes a CLI starts: stop with the parent, the schema and
queue-type gates, the database waiter.
Middleware of one package live in it: ``ScheduleGuard`` (:mod:`bgworkers.scheduling.middleware`),
``OutboxRelay`` (:mod:`bgworkers.outbox.middleware`), ``DeadLetterIndex``
(:mod:`bgworkers.console.middleware`), ``WorkerProcessBoot`` (:mod:`bgworkers.processes.boot`).
"""
