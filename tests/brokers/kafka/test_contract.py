"""The shared adapter contract (``tests/brokers/contract.py``) against Kafka.

Dead letters are written in the genuine Spring Kafka DeadLetterPublishingRecoverer format with
the client library itself, on fresh topics per test (:class:`KafkaHarness`).
"""

from __future__ import annotations

from tests.brokers.contract import AdapterContract
from tests.brokers.kafka.harness import KafkaHarness


class TestKafkaContract(KafkaHarness, AdapterContract):
    kind = "kafka"
    # 5 MB (the contract default) works: the dead-letter topics are created with
    # max.message.bytes=8 MiB (tansu accepts even 20 MB; Apache Kafka honours the topic setting)
    # and the test producer raises librdkafka's message.max.bytes to match.
