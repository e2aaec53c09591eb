"""Pipelined harvest against the real brokers: the next batch is read while the previous one is
stored, yet a store that fails leaves every batch from it onwards on the broker (nothing acked
unstored, nothing lost) and the batches stored before it acknowledged."""

from __future__ import annotations

import asyncio

import aio_pika  # noqa: TID251 - the tests fill the dead-letter locations with the client libraries
import nats  # noqa: TID251
import pytest
from confluent_kafka import Producer  # noqa: TID251
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: TID251
from nats.js.api import StreamConfig  # noqa: TID251

from brokers import get_adapter
from brokers.base import ConnectionConfig, HarvestedMessage, SourceSpec
from brokers.nats.admin import durable_name
from tests.conftest import AMQP_URL, KAFKA_BOOTSTRAP, NATS_URL, unique

COUNT, BATCH = 9, 2
PAYLOADS = [f"pipelined-{i}".encode() for i in range(COUNT)]


class FailingSink:
    """Stores batches in memory and raises on call number ``fail_at`` (1-based) before storing."""

    def __init__(self, fail_at: int | None = None):
        self.fail_at, self.calls = fail_at, 0
        self.stored: list[HarvestedMessage] = []

    async def __call__(self, batch: list[HarvestedMessage]) -> None:
        self.calls += 1
        await asyncio.sleep(0.05)  # a slow store: the adapter reads the next batch meanwhile
        if self.calls == self.fail_at:
            raise RuntimeError("database down")
        self.stored += batch


async def fill_rabbitmq():
    queue = unique("pipeline-dlq")
    conn = await aio_pika.connect(AMQP_URL, login="guest", password="guest")
    async with conn:
        channel = await conn.channel()
        await channel.declare_queue(queue, durable=False, auto_delete=False)
        for payload in PAYLOADS:
            await channel.default_exchange.publish(aio_pika.Message(payload), routing_key=queue)

    async def cleanup():
        async with await aio_pika.connect(AMQP_URL, login="guest", password="guest") as conn:
            await (await conn.channel()).queue_delete(queue)

    config = ConnectionConfig(kind="rabbitmq", url=AMQP_URL, username="guest", password="guest")
    return config, SourceSpec(name=queue, mode="queue", address=queue, options={"idle_timeout": 0.5}), cleanup


async def fill_kafka():
    topic = unique("pipeline-dlt")

    def fill():
        admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})  # kept alive for the futures
        for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
            future.result(10)
        producer = Producer({"bootstrap.servers": KAFKA_BOOTSTRAP, "acks": "all"})
        for payload in PAYLOADS:
            producer.produce(topic, value=payload)
        assert producer.flush(15) == 0

    async def cleanup():
        admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
        await asyncio.to_thread(lambda: [f.result(10) for f in admin.delete_topics([topic]).values()])

    await asyncio.to_thread(fill)
    config = ConnectionConfig(kind="kafka", url=KAFKA_BOOTSTRAP, timeout=5.0)
    return (
        config,
        SourceSpec(name=topic, mode="topic", address=topic, options={"group_id": unique("g")}),
        cleanup,
    )


async def fill_nats():
    stream = unique("PIPELINE").replace(".", "_").replace("-", "_").upper()
    subject = f"{stream.lower()}.dlq"
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=stream, subjects=[subject]))
        for payload in PAYLOADS:
            await js.publish(subject, payload)
    finally:
        await nc.close()

    async def cleanup():
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()

    config = ConnectionConfig(kind="nats", url=NATS_URL, timeout=5)
    return config, SourceSpec(name=stream, mode="dlq_stream", address=stream), cleanup


FILLS = {"rabbitmq": fill_rabbitmq, "kafka": fill_kafka, "nats": fill_nats}


async def harvest(config: ConnectionConfig, source: SourceSpec, sink: FailingSink):
    async with get_adapter(config) as adapter:
        return await adapter.harvest(source, sink, batch_size=BATCH)


@pytest.mark.parametrize("kind", sorted(FILLS))
def test_a_store_failing_mid_harvest_loses_nothing_and_acks_only_what_was_stored(kind):
    async def go():
        config, source, cleanup = await FILLS[kind]()
        try:
            first = FailingSink(fail_at=3)  # batches 1 and 2 stored, 3 fails while 4 may be read
            with pytest.raises(RuntimeError, match="database down"):
                await harvest(config, source, first)
            assert len(first.stored) == 2 * BATCH
            second = FailingSink()
            result = await harvest(config, source, second)
        finally:
            await cleanup()
        return first, second, result

    first, second, result = asyncio.run(go())
    stored_first = [m.payload for m in first.stored]
    stored_second = [m.payload for m in second.stored]
    # The first two batches were acknowledged (not harvested again); everything else came back.
    assert not set(stored_first) & set(stored_second)
    assert sorted(stored_first + stored_second) == sorted(PAYLOADS)
    assert result.received == COUNT - 2 * BATCH and result.exhausted


@pytest.mark.parametrize("kind", sorted(FILLS))
def test_a_pipelined_harvest_acks_everything_it_stored(kind):
    async def go():
        config, source, cleanup = await FILLS[kind]()
        try:
            sink = FailingSink()
            result = await harvest(config, source, sink)
            again = FailingSink()
            await harvest(config, source, again)
        finally:
            await cleanup()
        return sink, result, again

    sink, result, again = asyncio.run(go())
    assert sorted(m.payload for m in sink.stored) == sorted(PAYLOADS)
    assert result.received == COUNT and result.batches == -(-COUNT // BATCH)
    assert again.stored == []
    if kind != "kafka":  # the broker counts nothing left (Kafka keeps records: offsets instead)
        assert result.backlog == 0


def test_nats_batch_acks_are_all_applied_when_the_harvest_returns():
    """One reply per batch (the last ack is a request): the consumer has nothing pending or
    awaiting an ack the moment the harvest returns, with batches larger than the default."""

    async def go():
        stream = unique("ACKS").replace(".", "_").replace("-", "_").upper()
        subject = f"{stream.lower()}.dlq"
        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name=stream, subjects=[subject]))
            acks = [await js.publish_async(subject, f"m{i}".encode()) for i in range(1500)]
            await asyncio.gather(*acks)
            source = SourceSpec(name=stream, mode="dlq_stream", address=stream)
            sink = FailingSink()
            async with get_adapter(ConnectionConfig(kind="nats", url=NATS_URL, timeout=5)) as adapter:
                result = await adapter.harvest(source, sink, batch_size=1000)
                info = await js.consumer_info(stream, durable_name(source))
            return sink, result, info
        finally:
            await nc.jetstream().delete_stream(stream)
            await nc.close()

    sink, result, info = asyncio.run(go())
    assert len(sink.stored) == 1500 and result.received == 1500 and result.backlog == 0
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
