"""The RabbitMQ adapter against the real broker: the shared contract plus RabbitMQ specifics.

Every test builds its own uniquely named exchanges and queues, produces genuine dead letters
(reject, TTL, length limit, quorum delivery limit) and deletes what it created
(:class:`~tests.brokers.rabbitmq.harness.RabbitMQHarness`).
"""
