"""bgworkers' middleware, one module each; :mod:`bgworkers.brokers.rabbitmq` puts them in order."""
