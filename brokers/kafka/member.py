"""Harvesting a dead-letter topic as a member of the source's consumer group (follow mode).

A long-running harvester (``BrokerAdapter.follow``) keeps one subscribed consumer per source
across passes, in the source's group (``source.options["group_id"]``, default
``dlqadmin-harvester``), with the ``cooperative-sticky`` assignor: harvester replicas split the
topic's partitions between them, and a replica joining or leaving moves only the partitions that
must move (incremental rebalancing: nobody stops reading the partitions it keeps). A replica
killed with -9 stops heartbeating; after ``session_timeout`` (source option, seconds, default 10)
the group gives its partitions to the others, who resume from the committed offsets.

Offsets are committed after the sink stored the batch, only for partitions still assigned. A
batch stored by a replica whose partition was revoked (or that died) before its commit is read
again by the new owner: the UNIQUE (source, position) makes the second store a no-op, so every
record is stored exactly once. A commit refused because the group is rebalancing is not an
error for the same reason (the records are stored; the next owner re-reads a few).

One-shot harvests ("harvest now", ``manage.py harvest`` without ``--follow``) keep the
assign-only design of :mod:`brokers.kafka.harvest`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from brokers.base import BrokerError, ConnectionConfig, HarvestedMessage, HarvestResult, Sink, SourceSpec
from brokers.pipeline import store_ahead

from .client import ACTIVE_GROUP_CODES, ErrorLog, client_config, describe, is_permanent, topic_partitions
from .harvest import POLL_SECONDS, group_of, to_harvested

log = logging.getLogger("brokers.kafka")

#: seconds without a heartbeat after which the group gives a member's partitions to the others
DEFAULT_SESSION_TIMEOUT = 10.0


class GroupMember:
    """This process's membership in one source's consumer group: a subscribed consumer, the
    partitions it holds now and those it has read to their end."""

    def __init__(self, config: ConnectionConfig, source: SourceSpec):
        self.topic, self.group = source.address, group_of(source)
        session = float(source.options.get("session_timeout") or DEFAULT_SESSION_TIMEOUT)
        self.errors = ErrorLog()
        conf = client_config(
            config,
            self.errors,
            **{
                "group.id": self.group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": int(session * 1000),
                "heartbeat.interval.ms": max(100, int(session * 1000 / 3)),
            },
        )
        try:
            self.consumer = Consumer(conf)
        except KafkaException as exc:
            raise BrokerError(f"invalid Kafka consumer configuration: {exc}", permanent=True) from exc
        self.assigned: set[int] = set()
        self.at_eof: set[int] = set()
        self.cluster_id = ""
        self.partitions = 0  # the topic's partition count when the member joined
        self.backlog_counted: tuple[float, int | None] = (-1e9, None)  # (monotonic, backlog)
        # consume (read ahead) and commit run in worker threads, possibly at once; close waits
        # for both: a thread left running by a cancelled await must never meet a closed handle
        self._calls = threading.Condition()
        self._in_flight = 0
        self._closed = False
        try:
            # subscribe only to a topic that exists: librdkafka (2.x) has crashed the process on
            # a subscription to a missing topic, and does on a subscribed topic being deleted
            # (docs/architecture.md, "Scaling out")
            self.cluster_id, partitions = topic_partitions(self.consumer, self.topic, config.timeout)
            self.partitions = len(partitions)
            self.consumer.subscribe(
                [self.topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked
            )
        except BaseException:
            self.consumer.close()
            raise

    # called by librdkafka inside consume(), on the consuming thread
    def _assigned(self, consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {tp.partition for tp in partitions}
        log.info(
            "group %s: assigned %s of %s (holding %s)", self.group, _ps(partitions), self.topic, self.held()
        )

    def _revoked(self, consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self.assigned -= gone
        self.at_eof -= gone
        log.info(
            "group %s: revoked %s of %s (holding %s)", self.group, _ps(partitions), self.topic, self.held()
        )

    def held(self) -> list[int]:
        return sorted(self.assigned)

    def call(self, fn, *args, **kwargs):
        """Run ``fn`` (a consumer method) unless the member is closed; :meth:`close` waits for it."""
        with self._calls:
            if self._closed:
                raise BrokerError(f"the membership in group {self.group!r} was closed", permanent=False)
            self._in_flight += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with self._calls:
                self._in_flight -= 1
                self._calls.notify_all()

    def consume(self, count: int, timeout: float) -> list[Message]:
        return self.call(self.consumer.consume, count, timeout)

    def commit(self, offsets: dict[int, int]) -> dict[int, int]:
        """Commit ``offsets`` of the partitions still held; returns what was committed. A commit
        the group refuses while it rebalances is skipped (the batch is stored; whoever owns the
        partition next reads it again and stores nothing new)."""
        mine = {p: o for p, o in offsets.items() if p in self.assigned}
        if not mine:
            return {}
        tps = [TopicPartition(self.topic, p, o) for p, o in sorted(mine.items())]
        try:
            result = self.call(self.consumer.commit, offsets=tps, asynchronous=False) or []
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() in ACTIVE_GROUP_CODES:
                log.info("group %s: commit skipped during a rebalance: %s", self.group, describe(err))
                return {}
            raise BrokerError(f"commit of group {self.group!r} failed: {exc}", permanent=False) from exc
        failed = [tp for tp in result if tp.error is not None]
        if failed:
            err = failed[0].error
            if err.code() in ACTIVE_GROUP_CODES:
                return {tp.partition: tp.offset for tp in result if tp.error is None}
            raise BrokerError(
                f"commit of group {self.group!r} failed: {describe(err)}", permanent=is_permanent(err)
            )
        return mine

    def close(self) -> None:
        """Leave the group (the others get this member's partitions at once), once no consume or
        commit is running any more."""
        with self._calls:
            if self._closed:
                return
            self._closed = True
            self._calls.wait_for(lambda: self._in_flight == 0, timeout=60)
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError):
            log.debug("closing the group consumer failed", exc_info=True)


def _ps(partitions: list[TopicPartition]) -> list[int]:
    return sorted(tp.partition for tp in partitions)


async def harvest(
    member: GroupMember, source: SourceSpec, sink: Sink, *, limit: int | None, batch_size: int
) -> HarvestResult:
    """One pass of a group member: read what its partitions hold, store, commit. Returns when
    every partition it holds is at its end (``exhausted``), at ``limit``, or when a poll brings
    nothing (no partition yet, or the group is rebalancing: the next pass goes on).

    The consumer fetches in the background between passes, so the pass's first poll does not
    wait: an idle source costs one look at the consumer's queue, not ``POLL_SECONDS`` (a harvester
    watching hundreds of sources would spend its round waiting on idle topics). Later polls of
    the pass wait up to ``POLL_SECONDS`` for a full batch. When nothing was read and this member
    holds every partition, all at their end, the backlog is 0 without asking the cluster."""
    if batch_size < 1 or (limit is not None and limit < 0):
        raise BrokerError("batch_size must be >= 1 and limit >= 0", permanent=True)
    topic = member.topic
    result = HarvestResult()
    committed: dict[int, int] = {}

    async def batches():
        read, wait = 0, 0.0  # the first call takes what the consumer already fetched, no wait
        while limit is None or read < limit:
            want = batch_size if limit is None else min(batch_size, limit - read)
            records = await asyncio.to_thread(member.consume, want, wait)
            wait = POLL_SECONDS
            batch: list[Message] = []
            for msg in records:
                err = msg.error()
                if err is None:
                    batch.append(msg)
                    member.at_eof.discard(msg.partition())
                elif err.code() == KafkaError._PARTITION_EOF:
                    member.at_eof.add(msg.partition())
                elif is_permanent(err) or err.fatal():
                    raise BrokerError(f"harvest of {topic!r}: {describe(err)}", permanent=is_permanent(err))
                else:
                    member.errors(err)
            if batch:
                read += len(batch)
                yield batch
                continue
            if member.assigned and member.assigned <= member.at_eof:
                result.exhausted = True
            return

    async def convert(batch: list[Message]) -> list[HarvestedMessage]:
        return [to_harvested(m, member.cluster_id) for m in batch]

    async def acknowledge(batch: list[Message]) -> None:
        offsets = {m.partition(): m.offset() + 1 for m in batch}
        committed.update(await asyncio.to_thread(member.commit, offsets))
        result.received += len(batch)
        result.batches += 1

    started = time.monotonic()
    try:
        await store_ahead(batches(), convert, sink, acknowledge=acknowledge)
    except KafkaException as exc:
        raise BrokerError(f"harvest of {topic!r}: {exc}", permanent=False) from exc
    source.cursor.update(
        {
            "cluster_id": member.cluster_id,
            "group_id": member.group,
            "offsets": {**source.cursor.get("offsets", {}), **{str(p): o for p, o in committed.items()}},
        }
    )
    holds_all = member.assigned and len(member.assigned) == member.partitions
    if not result.received and holds_all and member.assigned <= member.at_eof:
        result.backlog = 0
    log.debug("group %s: pass over %s in %.2fs", member.group, topic, time.monotonic() - started)
    return result
