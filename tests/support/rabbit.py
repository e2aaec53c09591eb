"""Genuine RabbitMQ dead letters for service-level tests (real broker, unique names)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import aio_pika
from aio_pika import DeliveryMode, ExchangeType, Message

from tests.conftest import unique

AMQP_URL = os.environ.get("AMQP_URL", "amqp://127.0.0.1:5672/")


@dataclass
class Topology:
    exchange: str
    work_queue: str
    dlx: str
    dlq: str
    routing_key: str = "order.created"


async def _connect():
    return await aio_pika.connect_robust(AMQP_URL, login="guest", password="guest")


async def _dead_letter_into(
    top: Topology, count: int, payload_prefix: bytes = b"msg-", headers=None, *, wait: bool = True
) -> None:
    """Declare ``top`` (idempotent), publish ``count`` messages and reject each into the DLQ;
    with ``wait``, return once the DLQ holds them (never with a harvester running: it may take
    them first, and the wait would last its 10 s)."""
    conn = await _connect()
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        dlx = await ch.declare_exchange(top.dlx, ExchangeType.FANOUT, auto_delete=False)
        dlq = await ch.declare_queue(top.dlq, durable=True)
        await dlq.bind(dlx)
        ex = await ch.declare_exchange(top.exchange, ExchangeType.DIRECT)
        work = await ch.declare_queue(
            top.work_queue, durable=True, arguments={"x-dead-letter-exchange": top.dlx}
        )
        await work.bind(ex, routing_key=top.routing_key)
        before = (await dlq.declare()).message_count
        for i in range(count):
            await ex.publish(
                Message(
                    payload_prefix + str(i).encode(),
                    delivery_mode=DeliveryMode.PERSISTENT,
                    message_id=f"m-{i}",
                    headers={"tenant": "acme", **(headers or {})},
                ),
                routing_key=top.routing_key,
            )
        rejected = 0
        while rejected < count:
            msg = await work.get(no_ack=False, fail=False, timeout=5)
            if msg is None:
                await asyncio.sleep(0.02)
                continue
            await msg.reject(requeue=False)
            rejected += 1
        for _ in range(500 if wait else 0):  # dead-lettering is asynchronous
            if (await dlq.declare()).message_count >= before + count:
                break
            await asyncio.sleep(0.02)


async def _dead_letter(count: int, payload_prefix: bytes, headers: dict | None) -> Topology:
    top = Topology(exchange=unique("ex"), work_queue=unique("work"), dlx=unique("dlx"), dlq=unique("dlq"))
    await _dead_letter_into(top, count, payload_prefix, headers)
    return top


def dead_letter(count: int, payload_prefix: bytes = b"msg-", headers: dict | None = None) -> Topology:
    """Publish ``count`` messages and reject each, so they dead-letter into a fresh DLQ."""
    return asyncio.run(_dead_letter(count, payload_prefix, headers))


SPRING_STACK = (
    "org.springframework.amqp.rabbit.support.ListenerExecutionFailedException: Listener threw exception\n"
    "\tat com.acme.orders.OrderListener.onOrder(OrderListener.java:42)\n"
)


async def _spring_republished(top: Topology, count: int, payload_prefix: bytes) -> None:
    """Like Spring AMQP's ``RepublishMessageRecoverer``: a listener takes each message off the
    work queue, fails, republishes it to the error exchange (``top.dlx``, routing key
    ``error.<original key>``) with ``x-exception-*`` and ``x-original-exchange`` /
    ``x-original-routingKey`` headers (no ``x-death``, no queue name), confirmed, then acks it."""
    conn = await _connect()
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        errors = await ch.declare_exchange(top.dlx, ExchangeType.TOPIC)
        dlq = await ch.declare_queue(top.dlq, durable=True)
        await dlq.bind(errors, routing_key="error.#")
        ex = await ch.declare_exchange(top.exchange, ExchangeType.DIRECT)
        work = await ch.declare_queue(top.work_queue, durable=True)
        await work.bind(ex, routing_key=top.routing_key)
        for i in range(count):
            body = payload_prefix + str(i).encode()
            await ex.publish(
                Message(body, message_id=f"s-{i}", headers={"tenant": "acme"}), routing_key=top.routing_key
            )
        recovered = 0
        while recovered < count:
            msg = await work.get(no_ack=False, fail=False, timeout=5)
            if msg is None:
                await asyncio.sleep(0.02)
                continue
            headers = {
                **(msg.headers or {}),
                "x-exception-message": "Listener threw exception",
                "x-exception-stacktrace": SPRING_STACK,
                "x-exception-cause-fqcn": "java.lang.IllegalStateException",
                "x-original-exchange": msg.exchange,
                "x-original-routingKey": msg.routing_key,
            }
            await errors.publish(
                Message(
                    msg.body,
                    message_id=msg.message_id,
                    headers=headers,
                    delivery_mode=DeliveryMode.PERSISTENT,
                ),
                routing_key=f"error.{msg.routing_key}",
            )
            await msg.ack()
            recovered += 1


def spring_republished(count: int, payload_prefix: bytes = b"spring-") -> Topology:
    """``count`` messages recovered into a fresh DLQ the way Spring AMQP's
    ``RepublishMessageRecoverer`` does (see :func:`_spring_republished`)."""
    top = Topology(exchange=unique("ex"), work_queue=unique("work"), dlx=unique("errors"), dlq=unique("dlq"))
    asyncio.run(_spring_republished(top, count, payload_prefix))
    return top


async def _drain(queue: str, wait: float) -> list[aio_pika.abc.AbstractIncomingMessage]:
    conn = await _connect()
    out = []
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(queue, passive=True)
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            msg = await q.get(no_ack=True, fail=False)
            if msg is not None:
                out.append(msg)
                continue
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
    return out


def drain(queue: str, wait: float = 0.5) -> list:
    """Take every message from ``queue`` (waiting ``wait`` seconds after it looks empty)."""
    return asyncio.run(_drain(queue, wait))


async def _delete(top: Topology) -> None:
    conn = await _connect()
    async with conn:
        ch = await conn.channel()
        for q in (top.work_queue, top.dlq):
            await ch.queue_delete(q)
        for ex in (top.exchange, top.dlx):
            await ch.exchange_delete(ex)


def delete(top: Topology) -> None:
    asyncio.run(_delete(top))


async def _dead_letter_bodies(top: Topology, bodies: list[tuple[bytes, dict]]) -> None:
    """Declare ``top``, publish each ``(body, properties)`` (content_type, content_encoding,
    headers ...) and reject it, so it dead-letters into ``top.dlq`` exactly as sent."""
    conn = await _connect()
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        dlx = await ch.declare_exchange(top.dlx, ExchangeType.FANOUT, auto_delete=False)
        dlq = await ch.declare_queue(top.dlq, durable=True)
        await dlq.bind(dlx)
        ex = await ch.declare_exchange(top.exchange, ExchangeType.DIRECT)
        work = await ch.declare_queue(
            top.work_queue, durable=True, arguments={"x-dead-letter-exchange": top.dlx}
        )
        await work.bind(ex, routing_key=top.routing_key)
        for i, (body, properties) in enumerate(bodies):
            message = Message(body, delivery_mode=DeliveryMode.PERSISTENT, message_id=f"m-{i}", **properties)
            await ex.publish(message, routing_key=top.routing_key)
        for _ in range(len(bodies)):
            msg = None
            for _ in range(250):
                msg = await work.get(no_ack=False, fail=False, timeout=5)
                if msg is not None:
                    break
                await asyncio.sleep(0.02)
            await msg.reject(requeue=False)
        for _ in range(500):  # dead-lettering is asynchronous
            if (await dlq.declare()).message_count >= len(bodies):
                break
            await asyncio.sleep(0.02)


def dead_letter_bodies(bodies: list[tuple[bytes, dict]]) -> Topology:
    """A fresh DLQ holding ``bodies`` (``(payload, aio-pika Message properties)``), in order."""
    top = Topology(exchange=unique("ex"), work_queue=unique("work"), dlx=unique("dlx"), dlq=unique("dlq"))
    asyncio.run(_dead_letter_bodies(top, bodies))
    return top
