"""The RabbitMQ hooks and helpers of the adapter tests: a work exchange and queue dead-lettering
into a DLX-bound DLQ (uniquely named, deleted after each test), genuine dead letters, reading what
a redrive delivered, and adapter calls. Mixed into the contract and the RabbitMQ-specific test
classes."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import aio_pika  # noqa: TID251 - the tests make real dead letters with the client library
import pytest
from aio_pika import DeliveryMode, ExchangeType, Message
from yarl import URL

from brokers import get_adapter
from brokers.base import ConnectionConfig, SourceSpec
from brokers.rabbitmq import RawLongStr, wire_value
from brokers.rabbitmq.connection import amqp_url
from tests.brokers.contract import AdapterContract, Received, Sent, run
from tests.conftest import AMQP_URL, unique

MANAGEMENT = f"http://{URL(AMQP_URL).host}:15672"  # the adapter's default management URL


@dataclass
class Topology:
    """work exchange --routing_key--> work queue --(dead-letter)--> dlx (fanout) --> dlq"""

    work_exchange: str
    work_queue: str
    dlx: str
    dlq: str
    routing_key: str = "work"

    @property
    def source(self) -> SourceSpec:
        return SourceSpec(name=self.dlq, mode="queue", address=self.dlq)


async def wait_ready(channel, queue: str, count: int, timeout: float = 10.0) -> None:
    """Poll until ``queue`` holds at least ``count`` ready messages (dead-lettering is async)."""
    deadline = time.monotonic() + timeout
    while True:
        declared = await channel.declare_queue(queue, passive=True)
        if declared.declaration_result.message_count >= count:
            return
        assert time.monotonic() < deadline, f"{queue} never reached {count} messages"
        await asyncio.sleep(0.02)


def management(method: str, path: str, body: dict | None = None) -> None:
    token = base64.b64encode(b"guest:guest").decode()
    request = urllib.request.Request(
        MANAGEMENT + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


class RabbitMQHarness:
    harvest_all = AdapterContract.harvest_all  # the contract's helper, without its tests

    # ---- hooks -------------------------------------------------------------------------------
    def config(self, **overrides) -> ConnectionConfig:
        fields = {"kind": "rabbitmq", "url": AMQP_URL, "username": "guest", "password": "guest", **overrides}
        return ConnectionConfig(**fields)

    def unreachable_config(self) -> ConnectionConfig:
        return self.config(url="amqp://127.0.0.1:1/", timeout=2)

    async def dead_letter(self, sent: list[Sent]) -> SourceSpec:
        async with self.connection() as conn:
            channel = await conn.channel()
            topo = await self.topology(channel)
            exchange = await channel.get_exchange(topo.work_exchange)
            for s in sent:
                # bytes header values go out as genuine non-UTF-8 long strings (wire type S)
                await exchange.publish(
                    Message(s.payload, headers=wire_value(s.headers)), routing_key=topo.routing_key
                )
            await self.reject_all(channel, topo.work_queue, len(sent))
            await wait_ready(channel, topo.dlq, len(sent))
        return topo.source

    async def read_redriven(self, source: SourceSpec, count: int, timeout: float = 10.0) -> list[Received]:
        messages = await self.read_queue(self.work_queue_of[source.address], count, timeout)
        return [Received(m.body, None, list((m.headers or {}).items())) for m in messages]

    # ---- fixtures and helpers ----------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _resources(self):
        self.queues: list[str] = []
        self.exchanges: list[str] = []
        self.policies: list[str] = []
        self.work_queue_of: dict[str, str] = {}
        yield
        for policy in self.policies:
            management("DELETE", f"/api/policies/%2F/{policy}")

        async def delete():
            async with self.connection() as conn:
                for name in self.queues:
                    channel = await conn.channel()
                    await channel.queue_delete(name)
                    await channel.close()
                for name in self.exchanges:
                    channel = await conn.channel()
                    await channel.exchange_delete(name)
                    await channel.close()

        run(delete())

    def connection(self):
        return _Connection(str(amqp_url(self.config())))

    async def topology(
        self,
        channel,
        *,
        work_args: dict | None = None,
        dlq_args: dict | None = None,
        work_type: ExchangeType = ExchangeType.DIRECT,
        dlq_name: str | None = None,
        with_dlx_argument: bool = True,
    ) -> Topology:
        base = unique("rmq")
        topo = Topology(f"{base}.work", f"{base}.work.q", f"{base}.dlx", dlq_name or f"{base}.dlq")
        self.exchanges += [topo.work_exchange, topo.dlx]
        self.queues += [topo.work_queue, topo.dlq]
        self.work_queue_of[topo.dlq] = topo.work_queue
        dlq_args = dict(dlq_args or {})
        work_args = dict(work_args or {})
        if with_dlx_argument:
            work_args["x-dead-letter-exchange"] = topo.dlx
        dlx = await channel.declare_exchange(topo.dlx, ExchangeType.FANOUT)
        dlq = await channel.declare_queue(
            topo.dlq, durable=dlq_args.get("x-queue-type") == "quorum", arguments=dlq_args
        )
        await dlq.bind(dlx)
        work = await channel.declare_exchange(topo.work_exchange, work_type)
        queue = await channel.declare_queue(
            topo.work_queue, durable=work_args.get("x-queue-type") == "quorum", arguments=work_args
        )
        await queue.bind(work, routing_key=topo.routing_key)
        return topo

    async def reject_all(self, channel, queue: str, count: int) -> None:
        work = await channel.get_queue(queue)
        for _ in range(count):
            message = await work.get(no_ack=False, timeout=5)
            await message.reject(requeue=False)

    async def read_queue(self, queue: str, count: int, timeout: float = 10.0) -> list:
        """Take what arrives in ``queue``: up to ``count``, then wait briefly for extras."""
        got = []
        async with self.connection() as conn:
            channel = await conn.channel()
            q = await channel.get_queue(queue)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                message = await q.get(no_ack=True, fail=False)
                if message is not None:
                    got.append(message)
                elif len(got) >= count:
                    deadline = min(deadline, time.monotonic() + 0.3)
                    await asyncio.sleep(0.05)
                else:
                    await asyncio.sleep(0.02)
        return got

    async def adapter_call(self, method: str, *args, config: ConnectionConfig | None = None, **kwargs):
        async with get_adapter(config or self.config()) as adapter:
            return await getattr(adapter, method)(*args, **kwargs)

    def harvest(self, source: SourceSpec, sink=None, **kw):
        return run(self.harvest_all(source, sink, **kw))

    def redrive(self, messages, **kw):
        return run(self.adapter_call("redrive", messages, **kw))

    async def rich_dead_letter(self, **topology_kw) -> tuple[Topology, dict, dict]:
        """One rejected message carrying every AMQP property and every header type."""
        when = datetime(2024, 5, 17, 12, 30, 45, tzinfo=UTC)
        sent_headers = {
            "int": 42,
            "big": 2**40,
            "neg": -7,
            "dec": Decimal("12.345"),
            "when": when,
            "flag": True,
            "ratio": 0.5,  # exact in the 32-bit float pamqp writes
            "nested": {"a": 1, "b": ["x", 2]},
            "list": [1, "two", False],
            "nothing": None,
            "blob": bytearray(b"\x00\x01\xff"),
            "raw": RawLongStr(b"\xc3\x28"),
            "text": "caf\u00e9",
            "tenant": "acme",
            "x-exception-fqcn": "com.example.OrderRejected",
            "x-exception-message": "order 42 has no lines",
            "x-exception-stacktrace": "com.example.OrderRejected: order 42\n\tat Orders.java:7",
            "x-retry-count": 2,
        }
        props = dict(
            message_id="m-42",
            correlation_id="c-42",
            content_type="application/json",
            content_encoding="identity",
            type="order.created",
            app_id="shop",
            timestamp=when,
            priority=5,
            reply_to="replies",
            delivery_mode=DeliveryMode.PERSISTENT,
            expiration=60,  # seconds: sent as "60000"
            user_id="guest",  # must be the publishing user
        )
        async with self.connection() as conn:
            channel = await conn.channel()
            topo = await self.topology(channel, **topology_kw)
            exchange = await channel.get_exchange(topo.work_exchange)
            await exchange.publish(
                Message(b'{"order": 42}', headers=sent_headers, **props), routing_key="work"
            )
            await self.reject_all(channel, topo.work_queue, 1)
            await wait_ready(channel, topo.dlq, 1)
        return topo, sent_headers, props


class _Connection:
    """``async with`` an aio-pika connection for the tests' own setup and checks."""

    def __init__(self, url: str):
        self.url = url

    async def __aenter__(self):
        self.conn = await aio_pika.connect(self.url, timeout=10)
        return self.conn

    async def __aexit__(self, *exc):
        await self.conn.close()
