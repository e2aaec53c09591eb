"""Genuine dead letters on any broker instance (shared or private) and broker-side checks.

RabbitMQ: :mod:`tests.support.rabbit` (publish, reject into a DLX-bound queue), pointed at any
node. Kafka: Spring Kafka ``DeadLetterPublishingRecoverer`` records (headers from
``tests.support.kafka``) produced with acks=all. NATS: real MAX_DELIVERIES advisories
(a worker consumer with ``max_deliver=1`` naks each message; helpers from
``tests.support.nats``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import aio_pika
import nats.errors  # noqa: TID251

# Tests produce and inspect genuine broker state with the client libraries themselves.
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: TID251
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: TID251
from nats.js.api import StreamConfig  # noqa: TID251

from brokers.base import SourceSpec
from brokers.nats.admin import capture_stream_name, durable_name
from dlqadmin.models import DeadLetter
from tests.conftest import unique
from tests.support import rabbit
from tests.support.kafka import spring_headers
from tests.support.nats import add_worker, advisory_source, connected
from tests.support.processes import wait_until

# --------------------------------------------------------------------------------------------
# Database side


def stored(source) -> int:
    return DeadLetter.objects.filter(source=source).count()


def distinct_positions(source) -> int:
    return DeadLetter.objects.filter(source=source).values("position").distinct().count()


# --------------------------------------------------------------------------------------------
# Harvester processes (started with the ``harvesters`` fixture of conftest.py)


def harvest_until(harvesters, source, at_least: int, *, replicas: int = 1, timeout: float = 60) -> list:
    """Start ``replicas`` follow-mode harvesters on ``source`` and wait until ``at_least`` of its
    dead letters are stored; returns the processes (a failure shows the count and a log tail)."""
    procs = [harvesters(source) for _ in range(replicas)]
    assert wait_until(lambda: stored(source) >= at_least, timeout), (
        f"only {stored(source)} stored\n{procs[0].log()[-3000:]}"
    )
    return procs


def stop_cleanly(procs) -> None:
    """SIGTERM each harvester; each must exit 0 (a clean stop, its last batch acked)."""
    for proc in procs:
        assert proc.stop() == 0, f"exit {proc.proc.returncode}\n{proc.log()[-3000:]}"


# --------------------------------------------------------------------------------------------
# RabbitMQ


@contextlib.contextmanager
def rabbit_at(url: str) -> Iterator[None]:
    """Point :mod:`tests.support.rabbit` at another node (a private one) for the block."""
    saved = rabbit.AMQP_URL
    rabbit.AMQP_URL = url
    try:
        yield
    finally:
        rabbit.AMQP_URL = saved


def queue_state(url: str, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of ``queue``. Unacked messages are not "ready": once the
    harvester process is gone, ready == 0 means nothing was left unacked either."""

    async def state():
        conn = await aio_pika.connect(url, login="guest", password="guest", timeout=10)
        async with conn:
            ch = await conn.channel()
            result = (await ch.declare_queue(queue, passive=True)).declaration_result
            return result.message_count, result.consumer_count

    return asyncio.run(state())


# --------------------------------------------------------------------------------------------
# Kafka


def kafka_admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "allow.auto.create.topics": False})


def kafka_create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = kafka_admin(bootstrap)  # keep the handle alive until the futures resolve
    futures = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=10)
    for future in futures.values():
        future.result(15)


def kafka_delete_topic(bootstrap: str, topic: str) -> None:
    admin = kafka_admin(bootstrap)
    with contextlib.suppress(Exception):
        for future in admin.delete_topics([topic], operation_timeout=10).values():
            future.result(15)


def kafka_dead_letters(
    bootstrap: str, topic: str, count: int, *, partitions: int = 1, start: int = 0
) -> dict[int, int]:
    """Produce ``count`` Spring-format DLT records (acks=all, round-robin over ``partitions``);
    returns partition -> next offset (the end each partition's committed offset must reach)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "allow.auto.create.topics": False,
            "linger.ms": 5,
        }
    )
    ends: dict[int, int] = {}
    failed: list = []

    def delivered(err, msg):
        if err is not None:
            failed.append(err)
        else:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    for i in range(start, start + count):
        partition = i % partitions
        producer.produce(
            topic,
            value=f"order-{i}".encode(),
            key=f"k-{i}".encode(),
            headers=[("tenant", b"acme"), *spring_headers("orders", partition, i)],
            partition=partition,
            on_delivery=delivered,
        )
        producer.poll(0)
    assert producer.flush(30) == 0 and not failed, failed
    return ends


def kafka_committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The consumer group's committed offset per partition (-1001 = none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        consumer.close()


# --------------------------------------------------------------------------------------------
# NATS


async def _nats_advisories(url: str, count: int, created: list) -> tuple[SourceSpec, str]:
    source, subject = await advisory_source(url, created, allow_direct=True)
    async with connected(url) as (nc, js):
        await add_worker(js, source.address, max_deliver=1)
    await nats_fail_more(url, source, subject, count, start=0)
    return source, subject


async def nats_fail_more(url: str, source: SourceSpec, subject: str, count: int, *, start: int) -> None:
    """Publish ``count`` more messages into the watched stream and let the worker (a durable
    with ``max_deliver=1``) nak every delivery until ``count`` more MAX_DELIVERIES advisories
    landed in the capture stream (each pull also makes the server notice exhausted messages)."""
    capture = capture_stream_name(source)
    async with connected(url) as (nc, js):
        target = (await js.stream_info(capture)).state.messages + count
        for i in range(start, start + count):
            await js.publish(f"{subject}.created", f"job-{i}".encode(), headers={"tenant": "acme"})
        psub = await js.pull_subscribe_bind("worker", stream=source.address)
        deadline = time.monotonic() + 60
        try:
            while (await js.stream_info(capture)).state.messages < target:
                assert time.monotonic() < deadline, "the advisories did not all arrive"
                try:
                    msgs = await psub.fetch(500, timeout=0.5)
                except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either
                    continue
                await asyncio.gather(*(nc.request(m.reply, b"-NAK", timeout=5) for m in msgs))
        finally:
            await psub.unsubscribe()


def nats_advisory_dead_letters(url: str, count: int, created: list) -> tuple[SourceSpec, str]:
    """A fresh work stream with a prepared capture stream holding ``count`` advisories.
    ``created`` collects (url, stream) pairs for :func:`tests.support.nats.delete_streams`."""
    return asyncio.run(_nats_advisories(url, count, created))


def nats_consumer_state(url: str, source: SourceSpec) -> tuple[int, int]:
    """(num_pending, num_ack_pending) of the harvester's durable on the capture stream."""

    async def state():
        async with connected(url) as (_, js):
            info = await js.consumer_info(capture_stream_name(source), durable_name(source))
            return info.num_pending or 0, info.num_ack_pending or 0

    return asyncio.run(state())


async def nats_app_dlq(url: str, created: list, count: int) -> tuple[str, str, str]:
    """A work stream (where redrives go) and an application-level DLQ stream holding ``count``
    dead letters whose ``x-original-subject`` is on the work stream. Returns
    (work stream, dlq stream, original subject)."""
    u = unique("x").replace(".", "_")
    work, dlq = f"T_FWORK_{u}", f"T_FDLQ_{u}"
    original = f"t.fwork.{u}.orders"
    async with connected(url) as (_, js):
        await js.add_stream(StreamConfig(name=work, subjects=[f"t.fwork.{u}.>"], duplicate_window=120))
        created.append((url, work))
        await js.add_stream(StreamConfig(name=dlq, subjects=[f"t.fdlq.{u}.>"]))
        created.append((url, dlq))
        for i in range(count):
            await js.publish(
                f"t.fdlq.{u}.orders",
                f"redrive-{i}".encode(),
                headers={
                    "x-original-subject": original,
                    "x-dead-letter-reason": "handler failed: boom",
                    "tenant": "acme",
                },
            )
    return work, dlq, original


async def nats_stream_messages(url: str, stream: str) -> list[dict]:
    """Every message of ``stream`` (payload, Nats-Msg-Id, seq) via STREAM.MSG.GET."""
    out = []
    async with connected(url) as (_, js):
        info = await js.stream_info(stream)
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            out.append({"seq": seq, "payload": msg.data, "msg_id": (msg.headers or {}).get("Nats-Msg-Id")})
    return out
