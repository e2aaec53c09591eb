"""Kafka side of a run (any Kafka-protocol broker): Spring Kafka ``-dlt`` dead letters (original
headers plus ``kafka_dlt-*``), and the raw confluent-kafka ceiling: a consumer committing each
batch synchronously, and an idempotent ``acks=all`` producer."""

from __future__ import annotations

import contextlib
import struct
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from . import data
from .config import BenchConfig

BATCH = 200  # the harvest's default batch size
PARTITIONS = 3


class KafkaBench:
    kind = "kafka"
    label = "Kafka"

    def __init__(self, config: BenchConfig, loop=None, tag: str = "kafka"):
        self.config = config
        base = f"{config.prefix()}.{tag}"
        self.topic, self.dlt = f"{base}.orders", f"{base}.orders-dlt"
        self.group = f"{base}.dlqadmin"
        self.admin = AdminClient({"bootstrap.servers": config.kafka_bootstrap})
        self.producer = Producer(
            {
                "bootstrap.servers": config.kafka_bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
            }
        )
        self.sent = 0

    def connection_kwargs(self) -> dict:
        return {"kind": "kafka", "url": self.config.kafka_bootstrap}

    def source_kwargs(self) -> dict:
        return {"mode": "topic", "address": self.dlt, "options": {"group_id": self.group}}

    def setup(self) -> None:
        futures = self.admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (self.topic, self.dlt)])
        for future in futures.values():
            future.result(15)
        deadline = time.monotonic() + 15
        while any(self._partitions(t) != PARTITIONS for t in (self.topic, self.dlt)):
            if time.monotonic() > deadline:
                raise RuntimeError("Kafka topics did not appear in the metadata")
            time.sleep(0.1)

    def cleanup(self) -> None:
        self.producer.flush(10)
        for future in self.admin.delete_topics([self.topic, self.dlt]).values():
            with contextlib.suppress(KafkaException):
                future.result(15)

    def _partitions(self, topic: str) -> int:
        meta = self.admin.list_topics(topic=topic, timeout=5).topics.get(topic)
        return 0 if meta is None or meta.error is not None else len(meta.partitions)

    def count_records(self, topic: str, timeout: float = 120) -> int:
        """Records on ``topic``, counted by reading it to the end of every partition (tansu's
        reported high watermarks lag behind what it stores, so they cannot be trusted)."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.config.kafka_bootstrap,
                "group.id": f"{self.group}.count",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        count, at_eof = 0, set()
        deadline = time.monotonic() + timeout
        try:
            while len(at_eof) < PARTITIONS and time.monotonic() < deadline:
                for m in consumer.consume(1000, 0.5):
                    if m.error() is None:
                        count += 1
                        at_eof.discard(m.partition())
                    elif m.error().code() == KafkaError._PARTITION_EOF:
                        at_eof.add(m.partition())
            return count
        finally:
            consumer.close()

    def destination_count(self) -> int:
        return self.count_records(self.topic)

    def purge_destination(self) -> None:
        """Kafka keeps records; destination_count() is compared before and after instead."""

    # ---- genuine dead letters ------------------------------------------------------------------
    def _dlt_headers(self, n: int) -> list[tuple[str, bytes]]:
        error_class, message = data.failure(n)
        return [
            ("tenant", data.tenant(n).encode()),
            ("x-request-id", f"req-{n:08d}".encode()),
            ("kafka_dlt-original-topic", self.topic.encode()),
            ("kafka_dlt-original-partition", struct.pack(">i", n % PARTITIONS)),
            ("kafka_dlt-original-offset", struct.pack(">q", n)),
            ("kafka_dlt-original-timestamp", struct.pack(">q", int(time.time() * 1000))),
            ("kafka_dlt-original-timestamp-type", b"CreateTime"),
            ("kafka_dlt-original-consumer-group", b"orders-svc"),
            (
                "kafka_dlt-exception-fqcn",
                b"org.springframework.kafka.listener.ListenerExecutionFailedException",
            ),
            ("kafka_dlt-exception-cause-fqcn", error_class.encode()),
            (
                "kafka_dlt-exception-message",
                f"Listener method failed; nested exception is {message}".encode(),
            ),
            (
                "kafka_dlt-exception-stacktrace",
                f"{error_class}: {message}\n\tat com.acme.Orders(Orders.java:42)\n".encode(),
            ),
        ]

    def _produce(self, topic: str, numbers: range, headers) -> None:
        failed: list = []
        for n in numbers:
            while True:
                try:
                    self.producer.produce(
                        topic,
                        key=data.order_id(n).encode(),
                        value=data.payload(n),
                        headers=headers(n),
                        on_delivery=lambda err, _msg: err and failed.append(err),
                    )
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)
        if self.producer.flush(120) or failed:
            raise RuntimeError(f"Kafka produce failed: {failed[:3]}")

    def make_dead_letters(self, count: int) -> None:
        self._produce(self.dlt, range(self.sent, self.sent + count), self._dlt_headers)
        self.sent += count

    def dead_letter_one(self) -> float:
        at = time.monotonic()
        self.make_dead_letters(1)  # the DLPR's write, acknowledged by the broker
        return at

    # ---- raw ceiling ----------------------------------------------------------------------------
    def raw_drain(self, count: int) -> float:
        """Seconds to read ``count`` dead letters, committing each batch's offsets synchronously."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.config.kafka_bootstrap,
                "group.id": f"{self.group}.raw",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
            }
        )
        consumer.assign([TopicPartition(self.dlt, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        received = 0
        start = time.perf_counter()
        deadline = time.monotonic() + 600
        try:
            while received < count and time.monotonic() < deadline:
                batch = [m for m in consumer.consume(BATCH, 0.25) if m.error() is None]
                if not batch:
                    continue
                offsets = {m.partition(): m.offset() + 1 for m in batch}
                consumer.commit(
                    offsets=[TopicPartition(self.dlt, p, o) for p, o in offsets.items()], asynchronous=False
                )
                received += len(batch)
            return time.perf_counter() - start
        finally:
            consumer.close()

    def raw_publish(self, count: int) -> float:
        """Seconds to produce ``count`` records to the original topic, every one acknowledged (acks=all)."""
        start = time.perf_counter()
        self._produce(self.topic, range(count), lambda n: [("tenant", data.tenant(n).encode())])
        return time.perf_counter() - start
