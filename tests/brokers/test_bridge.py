"""brokers.run, the one bridge, and brokers.shared, the one client cache, against real brokers:
every call runs on the process's one loop, sync_to_async work inside runs back on the calling
thread (the ORM's thread), a loop cannot call it, a Kafka producer is kept in the same cache as
the adapters, and discarding an adapter while another caller reconnects it leaves nothing open."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from asgiref.sync import sync_to_async

import brokers
from brokers import shared
from brokers.base import ConnectionConfig, Destination, RedriveMessage
from tests.conftest import AMQP_URL, NATS_URL, unique


@pytest.fixture(autouse=True)
def fresh_loop():
    shared.close()
    yield
    shared.close()


def test_every_call_runs_on_the_one_broker_loop_and_sync_work_on_the_calling_thread():
    async def where():
        loop = asyncio.get_running_loop()
        caller = await sync_to_async(threading.get_ident, thread_sensitive=True)()
        return loop, threading.get_ident(), caller

    loop, loop_thread, caller = brokers.run(where)
    assert caller == threading.get_ident() and loop_thread != caller
    from_thread = {}

    def other() -> None:
        from_thread["result"] = brokers.run(where)
        from_thread["me"] = threading.get_ident()

    worker = threading.Thread(target=other)
    worker.start()
    worker.join(10)
    again_loop, again_thread, again_caller = from_thread["result"]
    assert again_loop is loop and again_thread == loop_thread  # one loop, not one per call
    assert again_caller == from_thread["me"]  # the second caller's own thread


def test_a_running_event_loop_cannot_call_the_bridge():
    async def nested():
        return brokers.run(asyncio.sleep, 0)

    with pytest.raises(RuntimeError, match="event loop"):
        asyncio.run(nested())

    async def on_the_broker_loop():
        return brokers.run(asyncio.sleep, 0)

    with pytest.raises(RuntimeError, match="event loop"):
        brokers.run(on_the_broker_loop)


def test_an_error_inside_reaches_the_caller_and_the_loop_keeps_serving():
    async def fails():
        raise brokers.BrokerError("refused", permanent=True)

    with pytest.raises(brokers.BrokerError, match="refused"):
        brokers.run(fails)
    assert brokers.run(asyncio.sleep, 0, "still here") == "still here"


def test_the_kafka_producer_is_kept_in_the_one_cache_for_every_loop():
    """Adapters on the broker loop and on a loop of their own share one producer, which the
    cache closes with everything else."""
    from tests.support import kafka

    topic = unique("bridge-kafka")
    kafka.create_topics(topic, partitions=1)
    config = kafka.config(bridge_test=topic)  # settings of its own: a producer of its own

    def one() -> RedriveMessage:
        return RedriveMessage(ref=uuid.uuid4().hex, redrive_id=str(uuid.uuid4()), payload=b"k")

    async def send(adapter):
        outcomes = await adapter.redrive([one()], destination=Destination(topic=topic))
        assert all(o.ok for o in outcomes), outcomes
        return adapter._producer

    async def kept():
        return await send(await shared.adapter(config))

    async def own():
        async with brokers.get_adapter(config) as adapter:
            return await send(adapter)

    try:
        producer = brokers.run(kept)
        assert asyncio.run(own()) is producer  # a loop of its own reuses it too
        assert shared.cached() == 2  # the adapter and its producer, one table
        assert producer._producer is not None
        shared.close()
        assert producer._producer is None and shared.cached() == 0
        assert len(kafka.read_topic(topic, 2)) == 2
    finally:
        for future in kafka.admin().delete_topics([topic]).values():
            future.result(10)


@pytest.mark.parametrize("kind", ["rabbitmq", "nats"])
def test_discarding_an_adapter_while_another_call_reconnects_it_leaves_no_connection_open(kind):
    """Two redrive chunks on one kept adapter: one reconnects while the other discards the
    adapter after a transient failure. The connection being opened is closed, not left open
    and unowned (aio-pika then warned "Connection.close was never awaited")."""
    if kind == "rabbitmq":
        config = ConnectionConfig(kind=kind, url=AMQP_URL, username="guest", password="guest", timeout=5)
    else:
        config = ConnectionConfig(kind=kind, url=NATS_URL, timeout=5)

    async def race():
        adapter = await shared.adapter(config)
        opening = asyncio.create_task(adapter._connection() if kind == "rabbitmq" else adapter._client())
        await asyncio.sleep(0)  # the task holds the adapter's lock, waiting for the broker
        assert adapter._lock.locked()
        await shared.discard(config, adapter)
        return adapter, await opening

    adapter, conn = brokers.run(race)
    assert conn.is_closed and shared.cached() == 0
    assert (adapter._conn if kind == "rabbitmq" else adapter._nc) is None


def test_discarding_a_replaced_adapter_keeps_its_replacement():
    config = ConnectionConfig(kind="rabbitmq", url=AMQP_URL, username="guest", password="guest", timeout=5)

    async def replaced():
        old = await shared.adapter(config)
        await shared.discard(config, old)  # chunk A
        new = await shared.adapter(config)  # chunk B connects afresh
        await shared.discard(config, old)  # chunk A's late second discard
        return new, await shared.adapter(config)

    new, now = brokers.run(replaced)
    assert now is new and shared.cached() == 1
