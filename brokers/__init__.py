"""Broker adapters: one module per broker kind behind the contract in :mod:`brokers.base`.

Only this package imports aio-pika, confluent-kafka or nats-py. Adapters are loaded lazily, on
first use of their kind, so a process that never talks to Kafka never imports librdkafka.
Sync code calls them through :func:`run`, the one bridge (see :mod:`brokers.shared`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import BrokerError, Capability, ConnectionConfig
from .shared import run

if TYPE_CHECKING:
    from .base import BrokerAdapter

ADAPTERS: dict[str, str] = {
    "rabbitmq": "brokers.rabbitmq.RabbitMQAdapter",
    "kafka": "brokers.kafka.KafkaAdapter",
    "nats": "brokers.nats.NatsAdapter",
}


def adapter_class(kind: str) -> type[BrokerAdapter]:
    try:
        dotted = ADAPTERS[kind]
    except KeyError:
        raise BrokerError(f"unknown broker kind {kind!r}", permanent=True) from None
    module_name, _, class_name = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def get_adapter(config: ConnectionConfig) -> BrokerAdapter:
    return adapter_class(config.kind)(config)


def capabilities(kind: str, mode: str | None = None) -> Capability:
    """What a broker kind (or one of its source modes) supports, e.g. NATS subject mode is LIVE_ONLY."""
    cls = adapter_class(kind)
    per_mode = getattr(cls, "MODE_CAPABILITIES", None)
    if mode and per_mode and mode in per_mode:
        return per_mode[mode]
    return cls.capabilities


__all__ = ["ADAPTERS", "BrokerError", "Capability", "adapter_class", "capabilities", "get_adapter", "run"]
