"""Genuine RabbitMQ dead letters for each reason (rejected, expired, maxlen, delivery_limit):
origin, properties and every header type survive the harvest."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

from aio_pika import DeliveryMode, Message

from brokers import headers
from brokers.rabbitmq import RawLongStr
from tests.brokers.contract import run
from tests.brokers.rabbitmq.harness import RabbitMQHarness, wait_ready

NOW_TOLERANCE = timedelta(minutes=5)


class TestRabbitMQDeadLetterReasons(RabbitMQHarness):
    def test_rejected_dead_letter_keeps_every_property_origin_and_header_type(self):
        topo, sent_headers, props = run(self.rich_dead_letter())
        sink, result = self.harvest(topo.source)
        (m,) = sink.messages
        assert result.received == 1 and result.exhausted and result.backlog == 0
        assert m.payload == b'{"order": 42}'
        assert m.reason == "rejected"
        assert (m.origin.queue, m.origin.exchange, m.origin.routing_key) == (
            topo.work_queue,
            topo.work_exchange,
            "work",
        )
        assert m.origin.routing_keys == ["work"]
        assert m.origin.extra["death_count"] == 1
        assert m.origin.extra["first_death"] == {
            "queue": topo.work_queue,
            "reason": "rejected",
            "exchange": topo.work_exchange,
        }
        (death,) = m.origin.extra["deaths"]
        assert death["reason"] == "rejected" and death["queue"] == topo.work_queue and death["count"] == 1
        assert death["original_expiration"] == "60000"  # the broker moved expiration into x-death
        assert abs(m.failed_at - datetime.now(UTC)) < NOW_TOLERANCE
        assert m.failed_at.isoformat() == death["time"]
        assert m.error_class == "com.example.OrderRejected"
        assert m.error_message == "order 42 has no lines"
        assert m.stacktrace.startswith("com.example.OrderRejected")
        assert m.retry_count == 2
        assert m.position.startswith(f"{topo.dlq}:") and len(m.position.rsplit(":", 1)[1]) == 64

        assert m.properties == {
            "message_id": "m-42",
            "correlation_id": "c-42",
            "content_type": "application/json",
            "content_encoding": "identity",
            "type": "order.created",
            "app_id": "shop",
            "timestamp": props["timestamp"].isoformat(),
            "priority": 5,
            "reply_to": "replies",
            "delivery_mode": 2,
            "expiration": None,
            "user_id": "guest",
            "cluster_id": None,
            "exchange": topo.dlx,
            "routing_key": "work",
            "redelivered": False,
        }
        types = {name: node["t"] for name, node in m.headers}
        assert types["x-death"] == "array" and types["x-first-death-reason"] == "str"
        assert {k: types[k] for k in sent_headers} == {
            "int": "int",
            "big": "int",
            "neg": "int",
            "dec": "decimal",
            "when": "timestamp",
            "flag": "bool",
            "ratio": "float",
            "nested": "table",
            "list": "array",
            "nothing": "void",
            "blob": "bytearray",
            "raw": "bytes",
            "text": "str",
            "tenant": "str",
            "x-exception-fqcn": "str",
            "x-exception-message": "str",
            "x-exception-stacktrace": "str",
            "x-retry-count": "int",
        }
        decoded = headers.decode_mapping(m.headers)
        for name, value in sent_headers.items():
            expected = value.raw if isinstance(value, RawLongStr) else value
            assert decoded[name] == expected and type(decoded[name]) is type(expected), name
        json.dumps([m.headers, m.properties, m.origin.extra])  # storable as JSON

    def test_per_message_ttl_dead_letters_with_reason_expired(self):
        async def go():
            async with self.connection() as conn:
                channel = await conn.channel()
                topo = await self.topology(channel)
                exchange = await channel.get_exchange(topo.work_exchange)
                await exchange.publish(Message(b"late", expiration=0.01), routing_key="work")
                await wait_ready(channel, topo.dlq, 1)
                return topo

        topo = run(go())
        (m,) = self.harvest(topo.source)[0].messages
        assert m.reason == "expired" and m.payload == b"late"
        assert m.origin.queue == topo.work_queue and m.origin.exchange == topo.work_exchange
        assert m.origin.extra["deaths"][0]["original_expiration"] == "10"
        assert m.properties["expiration"] is None

    def test_queue_length_limit_dead_letters_the_head_with_reason_maxlen(self):
        async def go():
            async with self.connection() as conn:
                channel = await conn.channel()
                topo = await self.topology(channel, work_args={"x-max-length": 1, "x-overflow": "drop-head"})
                exchange = await channel.get_exchange(topo.work_exchange)
                for body in (b"first", b"second"):
                    await exchange.publish(Message(body), routing_key="work")
                await wait_ready(channel, topo.dlq, 1)
                return topo

        topo = run(go())
        (m,) = self.harvest(topo.source)[0].messages
        assert m.reason == "maxlen" and m.payload == b"first"
        assert m.origin.queue == topo.work_queue and m.origin.routing_key == "work"

    def test_quorum_delivery_limit_dead_letters_with_reason_delivery_limit(self):
        async def go():
            async with self.connection() as conn:
                channel = await conn.channel()
                topo = await self.topology(
                    channel, work_args={"x-queue-type": "quorum", "x-delivery-limit": 1}
                )
                exchange = await channel.get_exchange(topo.work_exchange)
                await exchange.publish(
                    Message(b"poison", message_id="p-1", delivery_mode=DeliveryMode.PERSISTENT),
                    routing_key="work",
                )
                work = await channel.get_queue(topo.work_queue)
                deliveries = 0
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    message = await work.get(no_ack=False, fail=False)
                    if message is None:
                        if deliveries:
                            break
                        await asyncio.sleep(0.02)
                        continue
                    deliveries += 1
                    await message.nack(requeue=True)  # a consumer that keeps failing
                await wait_ready(channel, topo.dlq, 1)
                return topo, deliveries

        topo, deliveries = run(go())
        assert deliveries == 2  # limit 1: the first delivery plus one redelivery
        (m,) = self.harvest(topo.source)[0].messages
        assert m.reason == "delivery_limit" and m.payload == b"poison"
        assert m.origin.queue == topo.work_queue and m.origin.exchange == topo.work_exchange
        assert m.properties["message_id"] == "p-1" and m.properties["delivery_mode"] == 2
