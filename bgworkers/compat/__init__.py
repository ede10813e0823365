"""What bgworkers relies on beyond its dependencies' public API: one module per dependency.

- ``contract``: :class:`PrivateUse` (a name, why we use it, what an upgrade must re-check)
  and the check that the installed version still has it;
- ``dramatiq``: the RabbitMQ consumer and message classes, the queue-declaration methods;
- ``pika``: the asynchronous channel and the parameters behind a blocking connection;
- ``periodiq``: the scheduler's send loop;
- ``structlog``: the records ``ProcessorFormatter`` renders.

Code that needs one of these names takes it from here, never from the dependency directly;
``tests/test_dependency_contracts.py`` checks every listed use against the installed versions
(pinned exactly in pyproject.toml) and says what to re-check when one is gone or changed.
docs/dependencies.md is the reader's version of these lists.
"""
