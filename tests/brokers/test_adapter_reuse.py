"""brokers.shared: one event loop per process with adapters kept open across calls, against real
brokers: the same connection serves successive redrives, a lost connection is reopened, a
discarded adapter is closed, a forked child never touches its parent's connection, close() stops
everything, idle adapters are closed."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import aio_pika
import nats
import pytest

import brokers
from brokers import shared
from brokers.base import ConnectionConfig, Destination, Origin, RedriveMessage
from tests.conftest import AMQP_URL, NATS_URL, unique
from tests.support.tcp_proxy import TcpProxy


def message(queue: str = "", subject: str = "", body: bytes = b"hello") -> RedriveMessage:
    return RedriveMessage(
        ref=uuid.uuid4().hex,
        redrive_id=str(uuid.uuid4()),
        payload=body,
        origin=Origin(queue=queue, subject=subject),
    )


async def redrive(config: ConnectionConfig, messages: list[RedriveMessage], destination: str = ""):
    adapter = await shared.adapter(config)
    where = Destination(topic=destination) if destination else None
    return adapter, await adapter.redrive(messages, destination=where)


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def rabbit_config(url: str = AMQP_URL, **options) -> ConnectionConfig:
    return ConnectionConfig(
        kind="rabbitmq", url=url, username="guest", password="guest", timeout=5, options=options
    )


@pytest.fixture
def queue():
    """A fresh RabbitMQ queue; ``queue.count()`` reads its depth."""
    name = unique("reuse")

    async def declare(delete: bool = False):
        conn = await aio_pika.connect(AMQP_URL, login="guest", password="guest")
        async with conn:
            channel = await conn.channel()
            if delete:
                await channel.queue_delete(name)
                return 0
            q = await channel.declare_queue(name, durable=True)
            return q.declaration_result.message_count

    asyncio.run(declare())

    class Queue(str):
        def count(self) -> int:
            return asyncio.run(declare())

    yield Queue(name)
    asyncio.run(declare(delete=True))


@pytest.fixture(autouse=True)
def fresh_loop():
    """Each test starts without a loop or adapters and leaves none behind."""
    shared.close()
    yield
    shared.close()


def test_successive_redrives_reuse_one_adapter_and_one_connection(queue):
    config = rabbit_config()
    first, outcomes = brokers.run(redrive, config, [message(queue)])
    assert [o.ok for o in outcomes] == [True]
    connection = first._conn
    second, outcomes = brokers.run(redrive, rabbit_config(), [message(queue), message(queue)])
    assert [o.ok for o in outcomes] == [True, True]
    assert second is first and second._conn is connection and not connection.is_closed
    assert shared.cached() == 1
    assert queue.count() == 3


def test_changed_connection_settings_get_their_own_adapter(queue):
    a, _ = brokers.run(redrive, rabbit_config(), [message(queue)])
    b, _ = brokers.run(redrive, rabbit_config(publish_window=8), [message(queue)])
    assert a is not b and shared.cached() == 2


def test_a_connection_the_broker_dropped_is_reopened_on_the_next_call(queue):
    proxy = TcpProxy("127.0.0.1", int(AMQP_URL.rsplit(":", 1)[1].split("/")[0])).start()
    try:
        config = rabbit_config(f"amqp://127.0.0.1:{proxy.port}/")
        adapter, outcomes = brokers.run(redrive, config, [message(queue)])
        assert outcomes[0].ok
        dropped = adapter._conn
        proxy.cut()  # the broker "goes away": the kept connection is dead
        proxy.restore()
        assert wait_for(lambda: not adapter._connected())  # the client noticed
        again, outcomes = brokers.run(redrive, config, [message(queue)])
        assert outcomes[0].ok, outcomes[0].error
        assert again is adapter and again._conn is not dropped
    finally:
        proxy.close()
    assert queue.count() == 2


def test_a_nats_connection_that_lost_its_server_is_replaced_not_reused(nats_stream):
    subject, count = nats_stream
    proxy = TcpProxy("127.0.0.1", int(NATS_URL.rsplit(":", 1)[1])).start()
    try:
        config = ConnectionConfig(
            kind="nats", url=f"nats://127.0.0.1:{proxy.port}", timeout=5, options={"reconnect_time_wait": 2}
        )
        adapter, outcomes = brokers.run(redrive, config, [message(subject=subject)])
        assert outcomes[0].ok, outcomes[0].error
        lost = adapter._nc
        proxy.cut()
        proxy.restore()
        assert wait_for(lambda: not lost.is_connected)  # the client noticed
        # nats-py is now reconnecting (it waits reconnect_time_wait first): publishing on it
        # would only buffer. The adapter connects afresh instead.
        again, outcomes = brokers.run(redrive, config, [message(subject=subject)])
        assert outcomes[0].ok, outcomes[0].error
        assert again is adapter and again._nc is not lost and again._nc.is_connected
    finally:
        proxy.close()
    assert count() == 2


def test_discard_closes_the_adapter_and_the_next_call_connects_again(queue):
    config = rabbit_config()
    adapter, _ = brokers.run(redrive, config, [message(queue)])
    connection = adapter._conn
    brokers.run(shared.discard, config)
    assert connection.is_closed and shared.cached() == 0
    fresh, outcomes = brokers.run(redrive, config, [message(queue)])
    assert outcomes[0].ok and fresh is not adapter


def test_adapters_idle_too_long_are_closed(queue, monkeypatch):
    old, _ = brokers.run(redrive, rabbit_config(), [message(queue)])
    monkeypatch.setattr(shared, "IDLE_SECONDS", 0.0)
    brokers.run(redrive, rabbit_config(publish_window=4), [message(queue)])
    assert old._conn is None or old._conn.is_closed
    assert shared.cached() == 1


def test_a_forked_child_uses_its_own_loop_and_leaves_the_parents_connection_alone(queue):
    config = rabbit_config()
    adapter, _ = brokers.run(redrive, config, [message(queue, body=b"parent-1")])
    connection = adapter._conn
    pid = os.fork()
    if pid == 0:  # the child: nothing inherited is used, a new loop and connection work
        code = 1
        try:
            if shared.cached() == 0:
                child, outcomes = brokers.run(redrive, config, [message(queue, body=b"child")])
                code = 0 if outcomes[0].ok and child is not adapter else 2
            shared.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # the child exited (and closed its own connection): the parent's is untouched
    again, outcomes = brokers.run(redrive, config, [message(queue, body=b"parent-2")])
    assert outcomes[0].ok and again is adapter and again._conn is connection and not connection.is_closed
    assert queue.count() == 3


def test_close_closes_every_adapter_and_stops_the_loop(queue):
    adapter, _ = brokers.run(redrive, rabbit_config(), [message(queue)])
    connection, thread = adapter._conn, shared._state.thread
    shared.close()
    assert connection.is_closed and not thread.is_alive() and shared.cached() == 0
    shared.close()  # safe twice
    _, outcomes = brokers.run(redrive, rabbit_config(), [message(queue)])  # and usable again
    assert outcomes[0].ok


@pytest.fixture
def nats_stream():
    """A JetStream stream on a fresh subject: (subject, count())."""
    subject, stream = unique("reuse").replace(".", "_"), unique("REUSE").replace(".", "_")

    async def admin(action: str):
        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            if action == "add":
                await js.add_stream(name=stream, subjects=[subject])
            elif action == "count":
                return (await js.stream_info(stream)).state.messages
            else:
                await js.delete_stream(stream)
        finally:
            await nc.close()

    asyncio.run(admin("add"))
    yield subject, lambda: asyncio.run(admin("count"))
    asyncio.run(admin("delete"))


def test_kafka_reads_a_topics_partition_count_once_per_ttl_not_per_chunk(monkeypatch):
    from brokers.kafka import redrive as kafka_redrive
    from tests.support import kafka

    topic = unique("reuse-kafka")
    kafka.create_topics(topic, partitions=2)
    reads = []
    real = kafka_redrive.RedriveProducer._read_partition_count

    def counting(self, producer, name):
        reads.append(name)
        return real(self, producer, name)

    monkeypatch.setattr(kafka_redrive.RedriveProducer, "_read_partition_count", counting)
    try:
        config = kafka.config(reuse_test=topic)  # settings of its own: a producer of its own
        for _ in range(3):
            _, outcomes = brokers.run(redrive, config, [message(), message()], destination=topic)
            assert all(o.ok for o in outcomes), outcomes
        assert reads == [topic]
        monkeypatch.setattr(kafka_redrive, "PARTITIONS_TTL", 0.0)
        brokers.run(redrive, config, [message()], destination=topic)
        assert reads == [topic, topic]
        assert len(kafka.read_topic(topic, 7)) == 7
    finally:
        for future in kafka.admin().delete_topics([topic]).values():
            future.result(10)


def test_concurrent_callers_get_the_same_adapter_even_while_one_is_evicted(queue, monkeypatch):
    old, _ = brokers.run(redrive, rabbit_config(publish_window=2), [message(queue)])
    monkeypatch.setattr(shared, "IDLE_SECONDS", 0.0)  # closing the old one awaits mid-call

    async def together():
        return await asyncio.gather(*(shared.adapter(rabbit_config()) for _ in range(5)))

    found = brokers.run(together)
    assert len({id(a) for a in found}) == 1 and shared.cached() == 1
    assert old._conn is None or old._conn.is_closed
