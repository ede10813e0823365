"""The broker set-up: what turns dramatiq's RabbitMQ broker into bgworkers' broker.

- ``rabbitmq``: ``build_broker`` (the middleware, in order) and the screening consumer;
- ``cluster_broker``: quorum or classic queue arguments, logged (re)connections;
- ``broker_nodes``: several RabbitMQ nodes in ``BGW_BROKER_URL``;
- ``queue_types``: the arguments of every queue bgworkers declares;
- ``envelope``: the check of a delivered message's envelope (poison messages);
- ``coalesced_acks``: acks handed to the consumer's connection in batches;
- ``hook_dispatch``: middleware hooks called only where they are defined;
- ``queue_move``: ``bgworkers move-queues``, moving messages to another vhost.
"""
