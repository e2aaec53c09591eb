"""Redriving dead letters to Kafka with one idempotent producer per adapter.

* Key and value are sent byte-identical (a harvested tombstone goes back as a null value).
* Partition: the caller's ``Destination.partition``; else, for a keyless record, its original
  partition when the target topic has it; else the ``murmur2_random`` partitioner, which hashes
  keys exactly like the Java client (so a key lands where Java producers put it).
* Headers: the original ones the :class:`HeaderPolicy` keeps, in order, duplicates and null
  values included; then the retry headers as UTF-8 decimal / ISO-8601 strings (never binary,
  which would read like Spring's binary ints); then ``policy.extra``.
* The record gets a fresh timestamp; the old one goes in ``x-original-timestamp``.

Everything here blocks (but :meth:`RedriveProducer.close`); the adapter runs it in a worker thread.
Producers are kept in the process's one client cache, :func:`brokers.shared.client`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from brokers import headers as h
from brokers.base import (
    BrokerError,
    ConnectionConfig,
    Destination,
    HeaderPolicy,
    RedriveMessage,
    RedriveOutcome,
)

from .client import MISSING_TOPIC_CODES, ErrorLog, broker_error, client_config, describe, is_permanent

#: librdkafka refuses records above 1,000,000 bytes by default, below Kafka's broker default
#: (1,048,588) and below what a topic may allow; let the broker (or topic) limit decide instead,
#: its refusal is a permanent outcome.
DEFAULT_MESSAGE_MAX_BYTES = 16 * 1024 * 1024
#: librdkafka gives up on (and reports) a record it could not deliver within this many seconds.
DEFAULT_DELIVERY_TIMEOUT = 30.0
#: seconds a topic's partition count is reused. A stale count is harmless: a record for a
#: partition that no longer exists fails permanently, a new partition is used from the next read.
PARTITIONS_TTL = 10.0


def wire_value(value: Any) -> bytes | None:
    """A decoded header value as Kafka header bytes (None stays a null header)."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int | float | Decimal):
        return str(value).encode("ascii")
    if isinstance(value, datetime):
        return value.isoformat().encode("ascii")
    return json.dumps(value, default=str).encode("utf-8")


def redrive_headers(msg: RedriveMessage, policy: HeaderPolicy | None) -> list[tuple[str, bytes | None]]:
    policy = policy or HeaderPolicy()
    kept = [
        (name, wire_value(value)) for name, value in h.decode_pairs(h.filter_for_redrive(msg.headers, policy))
    ]
    origin = msg.origin
    original_ts = origin.extra.get("original_timestamp", msg.properties.get("timestamp"))
    retry = h.retry_headers(
        retry_count=msg.retry_count,
        redrive_id=msg.redrive_id,
        origin_headers={
            "x-original-topic": origin.topic or None,
            "x-original-partition": origin.partition,
            "x-original-offset": origin.offset,
            "x-original-timestamp": original_ts,
        },
    )
    out = kept + [(name, wire_value(value)) for name, value in retry]
    if policy.extra:
        override = {name.lower() for name in policy.extra}
        out = [(n, v) for n, v in out if n.lower() not in override]
        out += [(name, wire_value(value)) for name, value in policy.extra.items()]
    return out


def _failed(msg: RedriveMessage, destination: str, error: str, *, permanent: bool) -> RedriveOutcome:
    return RedriveOutcome(ref=msg.ref, ok=False, destination=destination, error=error, permanent=permanent)


class RedriveProducer:
    """One idempotent producer (acks=all), created on first use and reused until closed."""

    def __init__(self, config: ConnectionConfig):
        self.config = config
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._errors = ErrorLog()
        self.delivery_timeout = float(config.options.get("delivery_timeout", DEFAULT_DELIVERY_TIMEOUT))
        #: topic -> (partition count, monotonic time read): one Metadata request per topic per
        #: PARTITIONS_TTL seconds instead of one per redrive call.
        self._partitions: dict[str, tuple[int, float]] = {}

    def _get(self) -> Producer:
        with self._lock:
            if self._producer is None:
                conf = client_config(
                    self.config,
                    self._errors,
                    **{
                        "acks": "all",
                        "enable.idempotence": True,
                        "partitioner": "murmur2_random",
                        "linger.ms": self.config.options.get("linger_ms", 5),
                        "message.max.bytes": int(
                            self.config.options.get("message_max_bytes", DEFAULT_MESSAGE_MAX_BYTES)
                        ),
                        "message.timeout.ms": int(self.delivery_timeout * 1000),
                    },
                )
                try:
                    self._producer = Producer(conf)
                except KafkaException as exc:
                    raise BrokerError(f"invalid Kafka producer configuration: {exc}", permanent=True) from exc
            return self._producer

    def _discard(self) -> None:
        """Drop a producer that hit a fatal (idempotence) error; the next call makes a new one."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.purge()
            producer.close()

    def flush(self, timeout: float) -> None:
        with self._lock:
            producer = self._producer
        if producer is not None:
            producer.flush(timeout)

    async def close(self) -> None:
        """Flush (bounded by ``config.timeout``) and close; the next call makes a new producer.
        Runs the blocking part in a worker thread (the cache in :mod:`brokers.shared` awaits it)."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.to_thread(_shut, producer, self.config.timeout)

    # ---- one redrive call ------------------------------------------------------------------

    def send(
        self,
        messages: Sequence[RedriveMessage],
        destination: Destination | None,
        policy: HeaderPolicy | None,
    ) -> list[RedriveOutcome]:
        producer = self._get()
        destination = destination or Destination()
        outcomes: list[RedriveOutcome | None] = [None] * len(messages)
        counts: dict[str, int | None] = {}
        plans: list[tuple[int, str, int | None]] = []
        for i, msg in enumerate(messages):
            topic = destination.topic or msg.origin.topic
            if not topic:
                outcomes[i] = _failed(
                    msg,
                    "",
                    "needs a destination: no original topic is recorded; give a destination topic",
                    permanent=True,
                )
                continue
            if topic not in counts:
                counts[topic] = self._partition_count(producer, topic)  # BrokerError: nothing attempted
            count = counts[topic]
            if count is None:
                outcomes[i] = _failed(msg, topic, f"Kafka topic {topic!r} does not exist", permanent=True)
                continue
            partition = self._partition(msg, destination, count)
            if partition is not None and not 0 <= partition < count:
                outcomes[i] = _failed(
                    msg,
                    f"{topic}@{partition}",
                    f"topic {topic!r} has no partition {partition}",
                    permanent=True,
                )
                continue
            plans.append((i, topic, partition))

        reports: dict[int, tuple[KafkaError | None, Message]] = {}
        deadline = time.monotonic() + self.delivery_timeout + 5
        for i, topic, partition in plans:
            outcome = self._produce(producer, messages[i], topic, partition, policy, reports, i, deadline)
            if outcome is not None:
                outcomes[i] = outcome
        waiting = {i for i, _, _ in plans if outcomes[i] is None}
        while waiting - reports.keys() and time.monotonic() < deadline:
            producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))

        fatal = False
        for i, topic, partition in plans:
            if outcomes[i] is not None:
                continue
            msg = messages[i]
            where = f"{topic}@{partition}" if partition is not None else topic
            if i not in reports:
                outcomes[i] = _failed(
                    msg, where, f"no delivery report within {self.delivery_timeout:.0f}s", permanent=False
                )
                continue
            err, delivered = reports[i]
            if err is not None:
                fatal = fatal or err.fatal()
                outcomes[i] = _failed(msg, where, describe(err), permanent=is_permanent(err))
                continue
            outcomes[i] = RedriveOutcome(
                ref=msg.ref,
                ok=True,
                destination=f"{delivered.topic()}@{delivered.partition()}",
                position=f"{delivered.topic()}/{delivered.partition()}/{delivered.offset()}",
            )
        if fatal or (self._errors.last is not None and self._errors.last.fatal()):
            self._errors.last = None
            self._discard()
        return [o for o in outcomes if o is not None]

    def _partition_count(self, producer: Producer, topic: str) -> int | None:
        """Partitions of ``topic`` (None: it does not exist). A known count is reused for
        :data:`PARTITIONS_TTL` seconds; a missing topic is asked again every time."""
        known = self._partitions.get(topic)
        if known is not None and time.monotonic() - known[1] < PARTITIONS_TTL:
            return known[0]
        count = self._read_partition_count(producer, topic)
        if count is None:
            self._partitions.pop(topic, None)
        else:
            self._partitions[topic] = (count, time.monotonic())
        return count

    def _read_partition_count(self, producer: Producer, topic: str) -> int | None:
        try:
            md = producer.list_topics(topic=topic, timeout=self.config.timeout)
        except KafkaException as exc:
            raise broker_error(exc, f"cannot read metadata of topic {topic!r}") from exc
        tm = md.topics.get(topic)
        if tm is None or (tm.error is not None and tm.error.code() in MISSING_TOPIC_CODES):
            return None
        if tm.error is not None:
            raise BrokerError(
                f"metadata of topic {topic!r}: {describe(tm.error)}", permanent=is_permanent(tm.error)
            )
        return len(tm.partitions)

    @staticmethod
    def _partition(msg: RedriveMessage, destination: Destination, count: int) -> int | None:
        if destination.partition is not None:
            return destination.partition
        if msg.key is None and msg.origin.partition is not None and msg.origin.partition < count:
            return msg.origin.partition
        return None  # murmur2 of the key (Java-compatible); random when keyless

    def _produce(
        self,
        producer: Producer,
        msg: RedriveMessage,
        topic: str,
        partition: int | None,
        policy: HeaderPolicy | None,
        reports: dict[int, tuple[KafkaError | None, Message]],
        index: int,
        deadline: float,
    ) -> RedriveOutcome | None:
        """Enqueue one record; an outcome only when it could not even be enqueued."""
        value = None if msg.properties.get("value_is_null") and not msg.payload else msg.payload
        kwargs: dict[str, Any] = {
            "value": value,
            "key": msg.key,
            "headers": redrive_headers(msg, policy),
            "on_delivery": functools.partial(_on_delivery, reports, index),
        }
        if partition is not None:
            kwargs["partition"] = partition
        where = f"{topic}@{partition}" if partition is not None else topic
        while True:
            try:
                producer.produce(topic, **kwargs)
                producer.poll(0)
                return None
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                if time.monotonic() > deadline:
                    return _failed(msg, where, "local producer queue stayed full", permanent=False)
                producer.poll(0.1)
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if err is None:
                    return _failed(msg, where, str(exc), permanent=False)
                return _failed(msg, where, describe(err), permanent=is_permanent(err))


def _shut(producer: Producer, timeout: float) -> None:
    producer.flush(timeout)
    producer.purge()
    producer.close()


def _on_delivery(
    reports: dict[int, tuple[KafkaError | None, Message]], index: int, err: KafkaError | None, msg: Message
) -> None:
    reports[index] = (err, msg)
