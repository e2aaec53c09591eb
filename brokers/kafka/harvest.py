"""Harvesting a dead-letter topic: read to partition EOF, hand batches to the sink, then commit.

Design: the harvester *assigns* every partition of the topic explicitly and keeps its cursor as
the committed offsets of a consumer group (``source.options["group_id"]``), committed with
generation -1, the way ``kafka-consumer-groups --reset-offsets`` does. It never *joins* the group:

* no join/rebalance delay (several seconds on Apache Kafka, half the session timeout on tansu),
  and no rebalance can revoke a partition between the sink storing a batch and its commit;
* pointing ``group_id`` at an application's live group by mistake cannot steal partitions from
  that application: the broker refuses our commits instead (reported as a BrokerError);
* the partitions and their EOFs are known up front, so "drained" is exact.

Two one-shot harvests on one group at once would both read the same records; the UNIQUE
position makes the second copy a no-op in the database. The long-running harvester's replicas do
join the group (:mod:`brokers.kafka.member`), so they split the partitions instead.
"""

from __future__ import annotations

import asyncio
import time

from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from brokers import headers as h
from brokers import reading
from brokers.base import (
    BrokerError,
    ConnectionConfig,
    HarvestedMessage,
    HarvestResult,
    Origin,
    Sink,
    SourceSpec,
)
from brokers.pipeline import store_ahead

from . import conventions
from .client import (
    ACTIVE_GROUP_CODES,
    DEFAULT_GROUP,
    ErrorLog,
    broker_error,
    client_config,
    describe,
    is_permanent,
    topic_partitions,
)

#: how long one ``consume()`` call waits for a full batch before returning what it has.
POLL_SECONDS = 0.25

TIMESTAMP_TYPES = {
    TIMESTAMP_NOT_AVAILABLE: "NotAvailable",
    TIMESTAMP_CREATE_TIME: "CreateTime",
    TIMESTAMP_LOG_APPEND_TIME: "LogAppendTime",
}


def group_of(source: SourceSpec) -> str:
    return source.options.get("group_id") or DEFAULT_GROUP


def new_consumer(config: ConnectionConfig, group: str, errors: ErrorLog) -> Consumer:
    """A consumer that only ever assigns partitions and commits when told to."""
    conf = client_config(
        config,
        errors,
        **{
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        },
    )
    try:
        return Consumer(conf)
    except KafkaException as exc:
        raise BrokerError(f"invalid Kafka consumer configuration: {exc}", permanent=True) from exc


def commit(consumer: Consumer, offsets: list[TopicPartition], group: str) -> None:
    """Synchronous commit; a per-partition failure is an error too."""
    try:
        result = consumer.commit(offsets=offsets, asynchronous=False) or []
    except KafkaException as exc:
        raise _commit_error(exc.args[0] if exc.args else None, group, exc) from exc
    failed = [tp for tp in result if tp.error is not None]
    if failed:
        raise _commit_error(failed[0].error, group, None)


def _commit_error(err: KafkaError | None, group: str, exc: Exception | None) -> BrokerError:
    if isinstance(err, KafkaError) and err.code() in ACTIVE_GROUP_CODES:
        return BrokerError(
            f"cannot commit offsets of consumer group {group!r}: it has active members "
            f"(dlqadmin's follow-mode harvester replicas, which harvest this source continuously "
            f"and commit themselves, or another application: then give the source a group of its "
            f"own) [{err.name()}]",
            permanent=False,
        )
    if isinstance(err, KafkaError):
        return BrokerError(f"commit of group {group!r} failed: {describe(err)}", permanent=is_permanent(err))
    return BrokerError(f"commit of group {group!r} failed: {exc}", permanent=False)


def to_harvested(msg: Message, cluster_id: str) -> HarvestedMessage:
    """One record as a dead letter. Total: a record whose fields cannot all be read is still
    returned, with its raw value, key and headers and a note per unreadable field; if even that
    fails, the raw record with a note (:func:`salvaged`)."""
    try:
        return _converted(msg, cluster_id)
    except Exception as exc:  # noqa: BLE001 - a poison record is stored, never raised
        return salvaged(msg, cluster_id, exc)


def _position(msg: Message, cluster_id: str, timestamp: int | None) -> str:
    # The record's timestamp tells apart two records at the same offset of one topic name
    # (the topic was deleted and re-created, or an in-memory broker restarted), so a new
    # dead letter is never taken for a stored one; re-reading one record gives the same value.
    return f"{cluster_id}/{msg.topic()}/{msg.partition()}/{msg.offset()}@{timestamp}"


def _timestamp(msg: Message) -> tuple[int, int | None]:
    ts_type, ts = msg.timestamp()
    return ts_type, (ts if ts_type != TIMESTAMP_NOT_AVAILABLE else None)


def _properties(msg: Message, cluster_id: str, ts_type: int, ts: int | None) -> dict:
    return {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "cluster_id": cluster_id,
        "timestamp": ts,
        "timestamp_type": TIMESTAMP_TYPES.get(ts_type, str(ts_type)),
    }


def _converted(msg: Message, cluster_id: str) -> HarvestedMessage:
    value = msg.value()
    notes: list[str] = []
    encoded = h.encode_pairs(msg.headers())
    ts_type, ts = _timestamp(msg)
    properties = _properties(msg, cluster_id, ts_type, ts)
    epoch = msg.leader_epoch()
    if epoch is not None:
        properties["leader_epoch"] = epoch
    context = conventions.parse(encoded)
    return HarvestedMessage(
        **_record(msg, cluster_id, ts, value, encoded, properties, notes),
        origin=context.origin,
        reason=context.reason,
        error_class=context.error_class,
        error_message=context.error_message,
        stacktrace=context.stacktrace,
        failed_at=reading.epoch_ms(ts, notes, field=f"failed_at ({properties['timestamp_type']})"),
        retry_count=h.retry_count_of(encoded, notes),
    )


def salvaged(msg: Message, cluster_id: str, exc: Exception) -> HarvestedMessage:
    """The raw record (value, key, headers when they can be read) with a note saying why."""
    notes = [reading.salvage_note(exc)]
    ts_type, ts = _timestamp(msg)
    try:
        encoded = h.encode_pairs(msg.headers())
    except Exception as err:  # noqa: BLE001
        encoded = []
        notes.append(reading.note("headers", f"{type(err).__name__}: {err}"))
    value = msg.value()
    properties = _properties(msg, cluster_id, ts_type, ts)
    return HarvestedMessage(
        **_record(msg, cluster_id, ts, value, encoded, properties, notes),
        origin=Origin(extra={"format": "unreadable"}),  # unknown: a redrive needs a destination
        reason="unreadable",
    )


def _record(msg: Message, cluster_id: str, ts, value, encoded, properties: dict, notes) -> dict:
    """The record's own parts of its HarvestedMessage (position, payload, headers, key, notes).
    A null value (a tombstone) is stored as b"" and flagged, so a redrive sends null again."""
    if value is None:
        properties["value_is_null"] = True
    return {
        "position": _position(msg, cluster_id, ts),
        "payload": value if value is not None else b"",
        "headers": encoded,
        "properties": properties,
        "key": msg.key(),
        "read_notes": notes,
    }


async def harvest(
    config: ConnectionConfig, source: SourceSpec, sink: Sink, *, limit: int | None, batch_size: int
) -> HarvestResult:
    if source.mode != "topic":
        raise BrokerError(f"Kafka sources have mode 'topic', not {source.mode!r}", permanent=True)
    if batch_size < 1 or (limit is not None and limit < 0):
        raise BrokerError("batch_size must be >= 1 and limit >= 0", permanent=True)
    topic, group = source.address, group_of(source)
    # With no records arriving and not every partition at EOF, give up after this long.
    idle_seconds = float(
        source.options.get("idle_timeout", config.options.get("idle_timeout", config.timeout))
    )
    errors = ErrorLog()
    consumer = new_consumer(config, group, errors)
    try:
        cluster_id, partitions = await asyncio.to_thread(topic_partitions, consumer, topic, config.timeout)
        # Offset INVALID = resume from the group's committed offset (else auto.offset.reset).
        await asyncio.to_thread(consumer.assign, [TopicPartition(topic, p) for p in partitions])
        result = HarvestResult()
        next_offsets: dict[int, int] = {}

        async def batches():
            at_eof: set[int] = set()
            read = 0
            deadline = time.monotonic() + idle_seconds
            while limit is None or read < limit:
                want = batch_size if limit is None else min(batch_size, limit - read)
                records = await asyncio.to_thread(consumer.consume, want, POLL_SECONDS)
                batch: list[Message] = []
                progressed = False
                for msg in records:
                    err = msg.error()
                    if err is None:
                        batch.append(msg)
                        at_eof.discard(msg.partition())
                        progressed = True
                    elif err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(msg.partition())
                        progressed = True
                    elif is_permanent(err) or err.fatal():
                        raise BrokerError(
                            f"harvest of {topic!r}: {describe(err)}", permanent=is_permanent(err)
                        )
                    else:
                        errors(err)  # librdkafka retries these itself; remembered for the deadline
                if progressed:
                    deadline = time.monotonic() + idle_seconds
                if batch:
                    read += len(batch)
                    yield batch
                if at_eof.issuperset(partitions):
                    result.exhausted = True
                    result.backlog = 0
                    return
                if time.monotonic() > deadline:
                    if errors.last is not None:
                        raise BrokerError(
                            f"harvest of {topic!r} made no progress for {idle_seconds:.0f}s: "
                            f"{describe(errors.last)}",
                            permanent=False,
                        )
                    return

        async def convert(batch: list[Message]) -> list[HarvestedMessage]:
            return [to_harvested(m, cluster_id) for m in batch]

        async def acknowledge(batch: list[Message]) -> None:
            # Only what the sink has stored is committed: a failing sink commits nothing.
            offsets = {m.partition(): m.offset() + 1 for m in batch}
            commits = [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())]
            await asyncio.to_thread(commit, consumer, commits, group)
            next_offsets.update(offsets)
            result.received += len(batch)
            result.batches += 1

        # The next batch is read while the previous one is stored; commits stay in order.
        await store_ahead(batches(), convert, sink, acknowledge=acknowledge)
        source.cursor.update(
            {
                "cluster_id": cluster_id,
                "group_id": group,
                "offsets": {
                    **source.cursor.get("offsets", {}),
                    **{str(p): o for p, o in next_offsets.items()},
                },
            }
        )
        return result
    except KafkaException as exc:
        raise broker_error(exc, f"harvest of {topic!r}") from exc
    finally:
        await asyncio.to_thread(consumer.close)
