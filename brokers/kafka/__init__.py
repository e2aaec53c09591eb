"""Kafka broker adapter (confluent-kafka / librdkafka).

Kafka has no native dead-letter queue, only conventions: a dead-letter topic written by
Spring Kafka, Kafka Connect, Spring Cloud Stream or an application. The modules:

``adapter``      :class:`KafkaAdapter`, the contract methods (health, discover, backlog, rewind)
``harvest``      the harvest loop: read to partition EOF, hand batches to the sink, then commit
``redrive``      the idempotent producer: partition choice, redrive headers, delivery reports
``conventions``  what the dead-letter headers of each framework say (origin, error, stage)
``client``       librdkafka configuration from a ConnectionConfig, error classification
"""

from .adapter import KafkaAdapter

__all__ = ["KafkaAdapter"]
