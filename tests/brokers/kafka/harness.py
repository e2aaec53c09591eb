"""The Kafka hooks of the adapter tests: genuine Spring Kafka dead letters on fresh topics, and
reading what a redrive delivered to the original topic. Mixed into the contract and the
Kafka-specific test classes."""

from __future__ import annotations

import asyncio

from brokers.base import ConnectionConfig, SourceSpec
from tests.brokers.contract import Received, Sent
from tests.conftest import unique
from tests.support.kafka import (
    ORIGINAL_OFFSET,
    Record,
    config,
    create_topics,
    produce,
    read_topic,
    spring_headers,
    wire,
)


class KafkaHarness:
    def config(self) -> ConnectionConfig:
        return config()

    def unreachable_config(self) -> ConnectionConfig:
        return ConnectionConfig(kind="kafka", url="127.0.0.1:1", timeout=3)

    async def dead_letter(self, sent: list[Sent], partitions: int = 1) -> SourceSpec:
        """Spring Kafka style: ``<topic>-dlt`` on the original partition, original headers first,
        then the ``kafka_dlt-*`` context. The original topic is left empty (the record never got
        through), so whatever arrives there later was redriven."""
        source_topic = unique("kafka")
        dlt = f"{source_topic}-dlt"
        await asyncio.to_thread(create_topics, source_topic, dlt, partitions=partitions)
        records = []
        for i, s in enumerate(sent):
            partition = i % partitions
            original = [(name, wire(value)) for name, value in s.headers.items()]
            hdrs = original + spring_headers(source_topic, partition, ORIGINAL_OFFSET + i)
            records.append(Record(s.payload, s.key, hdrs, partition))
        await asyncio.to_thread(produce, dlt, records)
        return SourceSpec(name=dlt, mode="topic", address=dlt, options={"group_id": unique("grp")})

    async def read_redriven(self, source: SourceSpec, count: int, timeout: float = 10.0) -> list[Received]:
        arrived = await asyncio.to_thread(read_topic, source.address.removesuffix("-dlt"), count, timeout)
        return [Received(a.value, a.key, a.headers) for a in arrived]
