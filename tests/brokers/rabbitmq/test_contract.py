"""The shared adapter contract (``tests/brokers/contract.py``) against RabbitMQ."""

from __future__ import annotations

from tests.brokers.contract import AdapterContract
from tests.brokers.rabbitmq.harness import RabbitMQHarness


class TestRabbitMQContract(RabbitMQHarness, AdapterContract):
    kind = "rabbitmq"
