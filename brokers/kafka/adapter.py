"""The Kafka adapter: the :class:`~brokers.base.BrokerAdapter` contract over confluent-kafka.

Kafka is append-only, so a harvested record stays on the topic (no REMOVE_FROM_DLQ); the harvest
cursor is a consumer group's committed offsets, which :meth:`KafkaAdapter.rewind` moves back.
confluent-kafka blocks, so every client call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from brokers import shared
from brokers.base import (
    BrokerAdapter,
    BrokerError,
    Capability,
    ConnectionConfig,
    Destination,
    DiscoveredSource,
    HarvestResult,
    HeaderPolicy,
    Health,
    RedriveMessage,
    RedriveOutcome,
    Sink,
    SourceSpec,
)

from . import harvest as harvesting
from . import member as membership
from .client import ErrorLog, broker_error, describe, list_offsets, log, new_admin, topic_partitions
from .redrive import RedriveProducer

#: dead-letter topic names, checked in order against the lower-cased name.
NAME_RULES = (
    (re.compile(r"[-.]dlt$"), "name ends in -dlt/.DLT (Spring Kafka dead-letter topic)"),
    (re.compile(r"[-._]dl[qt]$"), "name ends in a dead-letter suffix (-dlq/.dlq/_dlq)"),
    (re.compile(r"dead[-._]?letter"), "name contains 'dead-letter'"),
    (re.compile(r"[-._]dl[qt][-._]"), "name contains a dead-letter marker (dlq/dlt)"),
    (re.compile(r"(^|[-._])errors?($|[-._])"), "name contains 'error' (e.g. a Kafka Connect error topic)"),
)
#: header prefixes that mark records as dead letters, whatever the topic is called.
HEADER_RULES = (
    ("kafka_dlt-", "recent records carry Spring Kafka dead-letter headers (kafka_dlt-*)"),
    ("__connect.errors.", "recent records carry Kafka Connect error headers (__connect.errors.*)"),
    ("x-exception-", "recent records carry Spring Cloud Stream error headers (x-exception-*)"),
)
#: broker- and platform-internal topics (consumer offsets, transactions, schema registry ...).
INTERNAL_PREFIXES = ("__", "_confluent", "_schemas")
#: how often an idle follow-mode pass recounts a backlog it cannot know from its own partitions
IDLE_BACKLOG_SECONDS = 10.0


def name_reason(topic: str) -> str:
    lower = topic.lower()
    return next((why for rule, why in NAME_RULES if rule.search(lower)), "")


class KafkaAdapter(BrokerAdapter):
    """Options (``ConnectionConfig.options``): ``sasl_mechanism`` (default PLAIN),
    ``security_protocol``, ``client`` (extra librdkafka settings), ``message_max_bytes``,
    ``linger_ms``, ``delivery_timeout`` (s), ``idle_timeout`` (s, harvest), ``discover_include``
    (regex: only matching topics are considered), ``discover_headers`` (default True),
    ``discover_sample_topics`` (default 50), ``discover_sample_records`` (per partition, default
    5), ``discover_sample_seconds``.

    Source options: ``group_id`` (default ``dlqadmin-harvester``), ``idle_timeout``,
    ``session_timeout`` (s, follow mode: how long a dead replica keeps its partitions, default 10).
    """

    kind = "kafka"
    modes = ("topic",)
    capabilities = (
        Capability.HARVEST | Capability.REDRIVE | Capability.DISCOVER | Capability.PEEK | Capability.REWIND
    )

    def __init__(self, config: ConnectionConfig):
        super().__init__(config)
        self._admin: AdminClient | None = None
        self._admin_errors = ErrorLog()
        self._producer: RedriveProducer | None = None
        self._members: dict[tuple[str, str], membership.GroupMember] = {}

    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            try:
                self._admin = new_admin(self.config, self._admin_errors)
            except KafkaException as exc:
                raise BrokerError(f"invalid Kafka client configuration: {exc}", permanent=True) from exc
        # Serve queued logs and error callbacks; an admin client is otherwise never polled.
        self._admin.poll(0)
        return self._admin

    # ---- health and discovery ----------------------------------------------------------------

    async def health(self) -> Health:
        """Cluster id and broker count from one Metadata request. The Kafka protocol does not
        report a broker's software version, so ``server_version`` names the protocol and cluster."""
        try:
            admin = self._admin_client()
            started = time.perf_counter()
            md = await asyncio.to_thread(admin.list_topics, timeout=self.config.timeout)
            latency = (time.perf_counter() - started) * 1000
        except (BrokerError, KafkaException) as exc:
            return Health(ok=False, error=str(broker_error(exc, "Kafka unreachable")))
        except Exception as exc:  # noqa: BLE001 - health never raises
            return Health(ok=False, error=f"Kafka health check failed: {exc}")
        brokers = len(md.brokers)
        return Health(
            ok=brokers > 0,
            server_version=f"Kafka protocol, cluster {md.cluster_id}, {brokers} broker(s)",
            latency_ms=round(latency, 3),
            error="" if brokers else "metadata lists no brokers",
        )

    async def discover(self) -> list[DiscoveredSource]:
        """Topics named like dead-letter topics, plus (``discover_headers``) topics whose most
        recent records carry dead-letter headers. Internal topics are skipped. ``messages`` is
        high - low watermark summed over partitions: an estimate (low against tansu, whose high
        watermark is the last batch's base offset + 1). Read-only; raises BrokerError."""
        return await asyncio.to_thread(self._discover)

    def _discover(self) -> list[DiscoveredSource]:
        admin = self._admin_client()
        try:
            md = admin.list_topics(timeout=self.config.timeout)
        except KafkaException as exc:
            raise broker_error(exc, "cannot list Kafka topics") from exc
        found: dict[str, str] = {}
        others: list[str] = []
        partitions: dict[str, list[int]] = {}
        try:
            include = re.compile(self.config.options.get("discover_include") or "")
        except re.error as exc:
            raise BrokerError(
                f"discover_include is not a valid regular expression: {exc}", permanent=True
            ) from exc
        for name, tm in sorted(md.topics.items()):
            if name.startswith(INTERNAL_PREFIXES) or tm.error is not None or not tm.partitions:
                continue
            if not include.search(name):
                continue
            partitions[name] = sorted(tm.partitions)
            why = name_reason(name)
            if why:
                found[name] = why
            else:
                others.append(name)
        if others and self.config.options.get("discover_headers", True):
            limit = int(self.config.options.get("discover_sample_topics", 50))
            try:
                found.update(self._sample_headers({t: partitions[t] for t in others[:limit]}))
            except (BrokerError, KafkaException) as exc:
                # Sampling is a bonus on top of the name rules; report what the names found.
                log.warning("Kafka discovery: header sampling skipped: %s", exc)
        counts = self._message_counts({t: partitions[t] for t in found})
        return [
            DiscoveredSource(mode="topic", address=topic, reason=why, messages=counts.get(topic))
            for topic, why in sorted(found.items())
        ]

    def _watermarks(self, tps: list[TopicPartition]) -> tuple[dict, dict]:
        admin = self._admin_client()
        low = list_offsets(admin, tps, OffsetSpec.earliest(), self.config.timeout)
        high = list_offsets(admin, tps, OffsetSpec.latest(), self.config.timeout)
        return low, high

    def _message_counts(self, topics: dict[str, list[int]]) -> dict[str, int]:
        tps = [TopicPartition(t, p) for t, ps in topics.items() for p in ps]
        try:
            low, high = self._watermarks(tps)
        except BrokerError:
            return {}  # counts are a nicety; discovery itself succeeded
        counts: dict[str, int] = {}
        for key, hi in high.items():
            counts[key[0]] = counts.get(key[0], 0) + max(0, hi - low.get(key, 0))
        return counts

    def _sample_headers(self, topics: dict[str, list[int]]) -> dict[str, str]:
        """Read the last few records of each partition (bounded in records and time) and
        report topics whose records carry dead-letter headers."""
        per_partition = int(self.config.options.get("discover_sample_records", 5))
        seconds = float(self.config.options.get("discover_sample_seconds", min(self.config.timeout, 5.0)))
        tps = [TopicPartition(t, p) for t, ps in topics.items() for p in ps]
        low, high = self._watermarks(tps)
        assign = []
        for (topic, partition), hi in high.items():
            lo = low.get((topic, partition), 0)
            if hi > lo:
                assign.append(TopicPartition(topic, partition, max(lo, hi - per_partition)))
        if not assign:
            return {}
        errors = ErrorLog()
        consumer = harvesting.new_consumer(self.config, "dlqadmin-discover", errors)
        found: dict[str, str] = {}
        seen: dict[tuple[str, int], int] = {}
        open_partitions = {(tp.topic, tp.partition) for tp in assign}
        try:
            consumer.assign(assign)
            deadline = time.monotonic() + seconds
            while open_partitions and time.monotonic() < deadline:
                for msg in consumer.consume(500, harvesting.POLL_SECONDS):
                    key = (msg.topic(), msg.partition())
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            open_partitions.discard(key)
                        continue
                    seen[key] = seen.get(key, 0) + 1
                    if seen[key] >= per_partition:
                        open_partitions.discard(key)
                    if key[0] in found:
                        continue
                    names = [name.lower() for name, _ in msg.headers() or []]
                    for prefix, why in HEADER_RULES:
                        if any(n.startswith(prefix) for n in names):
                            found[key[0]] = why
                            break
        finally:
            consumer.close()
        return found

    # ---- harvest, backlog, rewind ------------------------------------------------------------

    async def harvest(
        self, source: SourceSpec, sink: Sink, *, limit: int | None = None, batch_size: int = 100
    ) -> HarvestResult:
        """Read the topic from the group's committed offsets to partition EOF (not to the
        ListOffsets high watermark, which some brokers under-report), in batches of at most
        ``batch_size``; commit offset + 1 per partition synchronously after ``sink`` returned.
        A raising sink commits nothing and its exception propagates. Stops at EOF of every
        partition, at ``limit``, or after ``idle_timeout`` seconds without records. Raises
        BrokerError: permanent for an unknown topic, transient when the cluster is unreachable.
        """
        if source.mode == "topic" and self.follow:
            return await self._harvest_as_member(source, sink, limit=limit, batch_size=batch_size)
        return await harvesting.harvest(self.config, source, sink, limit=limit, batch_size=batch_size)

    async def _harvest_as_member(
        self, source: SourceSpec, sink: Sink, *, limit: int | None, batch_size: int
    ) -> HarvestResult:
        """Follow mode: harvest as a member of the source's consumer group (cooperative-sticky),
        so replicas split the partitions (:mod:`brokers.kafka.member`). The membership is kept
        across passes; an error drops it (the next pass joins again)."""
        key = (source.address, harvesting.group_of(source))
        member = self._members.get(key)
        if member is None:
            member = self._members[key] = await asyncio.to_thread(membership.GroupMember, self.config, source)
        try:
            result = await membership.harvest(member, source, sink, limit=limit, batch_size=batch_size)
        except BaseException:
            self._members.pop(key, None)
            await asyncio.to_thread(member.close)
            raise
        if result.backlog is None and not result.received:
            # an idle pass of a member that does not hold every partition (another replica
            # does): the backlog takes a client of its own, so count it at most every few seconds
            at, count = member.backlog_counted
            if time.monotonic() - at >= IDLE_BACKLOG_SECONDS:
                count = await self.backlog(source)
                member.backlog_counted = (time.monotonic(), count)
            result.backlog = count
        return result

    def holdings(self) -> dict[str, list[int]]:
        return {topic: member.held() for (topic, _), member in self._members.items()}

    async def release(self, *, keep: set[str]) -> None:
        """Leave the groups of topics no longer harvested here (the source was disabled, deleted
        or moved): the remaining members get the partitions at once."""
        for key in [key for key in self._members if key[0] not in keep]:
            await asyncio.to_thread(self._members.pop(key).close)

    async def backlog(self, source: SourceSpec) -> int | None:
        """Sum over partitions of high watermark - committed offset (low watermark when nothing
        is committed). Against tansu the high watermark is under-reported (last batch base offset
        + 1), so this is a lower bound there; it is exact against Apache Kafka."""
        return await asyncio.to_thread(self._backlog, source)

    def _backlog(self, source: SourceSpec) -> int:
        group = harvesting.group_of(source)
        consumer = harvesting.new_consumer(self.config, group, ErrorLog())
        try:
            _, partitions = topic_partitions(consumer, source.address, self.config.timeout)
            tps = [TopicPartition(source.address, p) for p in partitions]
            committed = self._committed(consumer, tps)
            low, high = self._watermarks(tps)
        finally:
            consumer.close()
        total = 0
        for tp in tps:
            key = (tp.topic, tp.partition)
            start = committed.get(tp.partition, -1)
            if start < 0:
                start = low.get(key, 0)
            total += max(0, high.get(key, 0) - start)
        return total

    def _committed(self, consumer, tps: list[TopicPartition]) -> dict[int, int]:
        try:
            return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=self.config.timeout)}
        except KafkaException as exc:
            raise broker_error(exc, "cannot read committed offsets") from exc

    async def rewind(
        self, source: SourceSpec, *, offset: int | None = None, timestamp_ms: int | None = None
    ) -> None:
        """Commit the harvest group's offset of every partition back to ``offset``, or to the
        first record at or after ``timestamp_ms`` (ListOffsets by time). Only ever moves back:
        a partition whose cursor is already earlier keeps it, so no unharvested record is
        skipped. Rows already stored are not duplicated (UNIQUE position). The group must have
        no live members. Raises BrokerError."""
        if (offset is None) == (timestamp_ms is None):
            raise BrokerError("rewind needs exactly one of offset or timestamp_ms", permanent=True)
        if offset is not None and offset < 0:
            raise BrokerError("rewind offset must be >= 0", permanent=True)
        await asyncio.to_thread(self._rewind, source, offset, timestamp_ms)

    def _rewind(self, source: SourceSpec, offset: int | None, timestamp_ms: int | None) -> None:
        topic, group = source.address, harvesting.group_of(source)
        consumer = harvesting.new_consumer(self.config, group, ErrorLog())
        try:
            _, partitions = topic_partitions(consumer, topic, self.config.timeout)
            tps = [TopicPartition(topic, p) for p in partitions]
            low, high = self._watermarks(tps)
            if offset is not None:
                wanted = {p: offset for p in partitions}
            else:
                try:
                    found = consumer.offsets_for_times(
                        [TopicPartition(topic, p, timestamp_ms) for p in partitions],
                        timeout=self.config.timeout,
                    )
                except KafkaException as exc:
                    raise broker_error(exc, f"cannot look up offsets of {topic!r} by time") from exc
                for tp in found:
                    if tp.error is not None:
                        raise BrokerError(f"offsets by time of {topic!r}: {describe(tp.error)}")
                # -1: no record at or after that time, i.e. the end of the partition.
                wanted = {
                    tp.partition: tp.offset if tp.offset >= 0 else high[(topic, tp.partition)] for tp in found
                }
            committed = self._committed(consumer, tps)
            targets = []
            for p in partitions:
                current = committed.get(p, -1)
                if current < 0:
                    current = low.get((topic, p), 0)
                target = max(low.get((topic, p), 0), min(wanted[p], current))
                targets.append(TopicPartition(topic, p, target))
            harvesting.commit(consumer, targets, group)
        finally:
            consumer.close()
        offsets = source.cursor.setdefault("offsets", {})
        offsets.update({str(tp.partition): tp.offset for tp in targets})

    # ---- redrive and close -------------------------------------------------------------------

    async def redrive(
        self,
        messages: Sequence[RedriveMessage],
        *,
        destination: Destination | None = None,
        header_policy: HeaderPolicy | None = None,
    ) -> list[RedriveOutcome]:
        """Produce each message with the adapter's idempotent producer (acks=all) and wait for
        its delivery report. Target topic: ``destination.topic``, else the recorded original
        topic; without either the outcome is permanent ("choose a destination topic"). A missing
        topic or a record too large is a permanent outcome, a delivery timeout a transient one.
        Raises BrokerError only when the cluster cannot be reached at all (nothing was sent).
        Not idempotent across calls: each call appends new records (dedup on
        ``x-dlq-redrive-id``)."""
        if not messages:
            return []
        # The process's kept producer for these settings (creating one costs about half a
        # second): every adapter on the same settings, on any loop, shares it.
        self._producer = shared.client("kafka-producer", self.config, lambda: RedriveProducer(self.config))
        return await asyncio.to_thread(self._producer.send, messages, destination, header_policy)

    async def close(self) -> None:
        """Flush the producer (bounded by ``config.timeout``); it stays open for the next adapter
        on the same connection settings (kept by ``brokers.shared.client``). Safe to call twice."""
        if self._producer is not None:
            await asyncio.to_thread(self._producer.flush, self.config.timeout)
        self._admin = None
        members, self._members = list(self._members.values()), {}
        for member in members:  # leave the groups: the other replicas take the partitions now
            await asyncio.to_thread(member.close)
