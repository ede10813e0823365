"""The broker set-up: what turns dramatiq's RabbitMQ broker into bgworkers' broker.

- ``rabbitmq``: the broker class, its screening consumer whose acks go in batches, and
  middleware hooks called only where they are defined (``build_broker``, which puts the
  middleware on it, is in :mod:`bgworkers.stack.broker`);
- ``wiring``: the broker made on first need;
- ``cluster_broker``: the arguments of every queue bgworkers declares (quorum or classic),
  logged (re)connections;
- ``broker_nodes``: several RabbitMQ nodes in ``BGW_BROKER_URL``; whether RabbitMQ answers;
- ``envelope``: the check of a delivered message's envelope (poison messages);
- ``queue_move``: ``bgworkers move-queues``, moving messages to another vhost.
"""
