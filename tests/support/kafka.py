"""Genuine Kafka dead letters and reading what arrived, against a real Kafka-protocol broker
(KAFKA_BOOTSTRAP, tansu here): topics, records written the way Spring Kafka's
DeadLetterPublishingRecoverer writes them, the Java client's key partitioning, and adapter calls.

Shared by the Kafka adapter tests (``tests/brokers/kafka/``), the fault tests and the hostile
corpus test.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from functools import cache

# The tests produce and consume genuine records with the client itself, to check the adapter
# from outside; application code never imports it (brokers/ only).
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition  # noqa: TID251
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: TID251

from brokers import get_adapter
from brokers.base import ConnectionConfig, SourceSpec
from tests.brokers.contract import ListSink
from tests.conftest import unique

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
#: the dead-letter topics allow records this large (topic max.message.bytes, portable to Kafka)
TOPIC_MAX_BYTES = 8 * 1024 * 1024
ORIGINAL_TS = 1_700_000_000_123
#: above 2**32, so an 8-byte offset that was read as 4 bytes would show
ORIGINAL_OFFSET = 2**33 + 100
WRAPPER = "org.springframework.kafka.listener.ListenerExecutionFailedException"
CAUSE = "java.lang.IllegalStateException"
STACK = "java.lang.IllegalStateException: boom\n\tat com.acme.Orders.handle(Orders.java:42)\n"
CONNECT = {
    "partition": "3",
    "offset": "18",
    "connector.name": "jdbc-sink",
    "task.id": "0",
    "stage": "VALUE_CONVERTER",
    "class.name": "org.apache.kafka.connect.json.JsonConverter",
    "exception.class.name": "org.apache.kafka.connect.errors.DataException",
    "exception.message": "Converting byte[] to Kafka Connect data failed due to serialization error",
    "exception.stacktrace": "org.apache.kafka.connect.errors.DataException: ...\n",
}


# --------------------------------------------------------------------------------------------
# Helpers: topics, genuine dead letters, reading what arrived


@cache
def admin() -> AdminClient:
    return AdminClient({"bootstrap.servers": BOOTSTRAP, "allow.auto.create.topics": False})


@cache
def producer() -> Producer:
    return Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "acks": "all",
            "enable.idempotence": True,
            "message.max.bytes": TOPIC_MAX_BYTES,
            "allow.auto.create.topics": False,
        }
    )


def create_topics(*names: str, partitions: int = 1) -> None:
    config = {"max.message.bytes": str(TOPIC_MAX_BYTES)}
    futures = admin().create_topics([NewTopic(n, partitions, 1, config=config) for n in names])
    for future in futures.values():
        future.result(10)


def topic_exists(name: str) -> bool:
    tm = admin().list_topics(topic=name, timeout=5).topics.get(name)
    return tm is not None and tm.error is None


@dataclass
class Record:
    value: bytes | None
    key: bytes | None = None
    headers: list | None = None
    partition: int = 0


def produce(topic: str, records: list[Record]) -> None:
    failed: list = []
    for r in records:
        producer().produce(
            topic,
            value=r.value,
            key=r.key,
            headers=r.headers or [],
            partition=r.partition,
            on_delivery=lambda err, _msg: err and failed.append(err),
        )
    assert producer().flush(15) == 0 and not failed, failed


def spring_headers(source_topic: str, partition: int, offset: int) -> list:
    """What Spring Kafka's DeadLetterPublishingRecoverer appends after the original headers."""
    return [
        ("kafka_dlt-original-topic", source_topic.encode()),
        ("kafka_dlt-original-partition", struct.pack(">i", partition)),
        ("kafka_dlt-original-offset", struct.pack(">q", offset)),
        ("kafka_dlt-original-timestamp", struct.pack(">q", ORIGINAL_TS)),
        ("kafka_dlt-original-timestamp-type", b"CreateTime"),
        ("kafka_dlt-original-consumer-group", b"orders-svc"),
        ("kafka_dlt-exception-fqcn", WRAPPER.encode()),
        ("kafka_dlt-exception-cause-fqcn", CAUSE.encode()),
        ("kafka_dlt-exception-message", b"Listener method failed; nested exception is boom"),
        ("kafka_dlt-exception-stacktrace", STACK.encode()),
    ]


def wire(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def fresh_source(topic: str) -> SourceSpec:
    return SourceSpec(name=topic, mode="topic", address=topic, options={"group_id": unique("grp")})


@dataclass
class Arrived:
    value: bytes | None
    key: bytes | None
    headers: list
    partition: int


def read_topic(topic: str, count: int, timeout: float = 10.0, extra: float = 1.0) -> list[Arrived]:
    """Everything on ``topic`` from the beginning: up to ``count`` records within ``timeout``,
    then ``extra`` seconds more so a duplicate would show. Redrive outcomes are acks=all
    confirmations, so once every partition is at EOF and ``extra`` seconds stayed quiet,
    nothing more is coming and the reader stops early even below ``count``."""
    partitions = admin().list_topics(topic=topic, timeout=5).topics[topic].partitions
    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": unique("reader"),
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    got: list[Arrived] = []
    at_eof: set[int] = set()
    deadline = time.monotonic() + timeout
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            for m in consumer.consume(100, 0.2):
                if m.error() is None:
                    got.append(Arrived(m.value(), m.key(), m.headers() or [], m.partition()))
                    at_eof.discard(m.partition())
                    quiet_until = None
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(m.partition())
            if len(got) >= count:
                deadline = min(deadline, time.monotonic() + extra)
            if at_eof >= set(partitions):
                quiet_until = quiet_until or time.monotonic() + extra
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    return got


def murmur2(data: bytes) -> int:
    """Apache Kafka's ``Utils.murmur2`` (signed 32-bit), as the Java producer hashes keys."""
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[length - length % 4 :]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def config(**options) -> ConnectionConfig:
    return ConnectionConfig(kind="kafka", url=BOOTSTRAP, timeout=5.0, options=options)


async def harvest(source: SourceSpec, adapter=None, **kw) -> ListSink:
    sink = ListSink()
    if adapter is not None:
        await adapter.harvest(source, sink, **kw)
        return sink
    async with get_adapter(config()) as fresh:
        await fresh.harvest(source, sink, **kw)
    return sink


async def redrive(messages, **kw):
    async with get_adapter(config()) as adapter:
        return await adapter.redrive(messages, **kw)
