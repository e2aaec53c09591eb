"""RabbitMQ demo: the orders topology and a failing ``orders-service`` consumer.

A direct exchange feeds a work queue whose ``x-dead-letter-exchange`` is a fanout DLX routing to
the DLQ. The consumer rejects (``x-death`` reason ``rejected``) or republishes to the DLX like
Spring AMQP's ``RepublishMessageRecoverer``; reservations expire (``expired``) and a full,
length-limited audit queue drops its oldest (``maxlen``). aio-pika is imported lazily.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from .common import _ticks, _wait_until, check_prefix, log
from .payloads import _order_failure, _stack, _trace, garbage, order


@dataclass(frozen=True)
class RabbitNames:
    exchange: str
    queue: str
    dlx: str
    dlq: str
    reservations: str
    audit: str


AUDIT_MAX_LENGTH = 3
RESERVATION_TTL_MS = 2000


def _order_message(rng: random.Random, kind: str, raw: bytes | None = None) -> dict:
    """Body and properties of an order event as a checkout service would publish it."""
    from aio_pika import DeliveryMode

    return {
        "body": raw or json.dumps(order(rng)).encode(),
        "headers": {"tenant": rng.choice(["acme", "globex", "initech"]), "traceparent": _trace(rng)},
        "content_type": "application/octet-stream" if raw else "application/json",
        "delivery_mode": DeliveryMode.PERSISTENT,
        "message_id": str(uuid.uuid4()),
        "correlation_id": f"req-{rng.getrandbits(32):08x}",
        "timestamp": datetime.now(UTC),
        "app_id": "checkout-api",
        "type": kind,
    }


def rabbitmq_names(prefix: str) -> RabbitNames:
    p = f"{check_prefix(prefix)}.orders"
    return RabbitNames(p, f"{p}.created", f"{p}.dlx", f"{p}.dlq", f"{p}.reservations", f"{p}.audit")


async def rabbitmq_setup(url: str, *, prefix: str) -> RabbitNames:
    """Declare the orders topology (idempotent). Returns the names; ``dlq`` is the DLQ."""
    import aio_pika
    from aio_pika import ExchangeType, Message

    n = rabbitmq_names(prefix)
    async with await aio_pika.connect(url, timeout=10) as conn:
        ch = await conn.channel(publisher_confirms=True)
        dlx = await ch.declare_exchange(n.dlx, ExchangeType.FANOUT, durable=True)
        dlq = await ch.declare_queue(n.dlq, durable=True)
        await dlq.bind(dlx)
        ex = await ch.declare_exchange(n.exchange, ExchangeType.DIRECT, durable=True)
        dead = {"x-dead-letter-exchange": n.dlx}
        work = await ch.declare_queue(n.queue, durable=True, arguments=dead)
        for key in ("order.created", "order.updated"):
            await work.bind(ex, routing_key=key)
        held = await ch.declare_queue(n.reservations, durable=True, arguments=dead)
        await held.bind(ex, routing_key="order.reserved")
        audit = await ch.declare_queue(
            n.audit, durable=True, arguments={**dead, "x-max-length": AUDIT_MAX_LENGTH}
        )
        await audit.bind(ex, routing_key="order.audit")
        # The audit reader is "down": keep its queue full, so every further audit event pushes
        # the oldest one out (reason maxlen) - exactly one dead letter per publish.
        rng = random.Random()
        for _ in range(AUDIT_MAX_LENGTH - (audit.declaration_result.message_count or 0)):
            await ex.publish(Message(**_order_message(rng, "OrderAudited")), routing_key="order.audit")
    return n


async def rabbitmq_traffic(
    url: str,
    *,
    prefix: str,
    rate: float = 2.0,
    count: int | None = None,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    seed: int | None = None,
) -> Counter:
    """Publish orders that fail in every way RabbitMQ records; run the failing consumer.

    Returns a Counter of dead letters caused, by kind (``rejected``, ``recovered``, ``expired``,
    ``maxlen``). With ``count``, returns once all of them have reached the DLQ (or after 30 s).
    """
    import aio_pika
    from aio_pika import DeliveryMode, Message

    n = rabbitmq_names(prefix)
    rng = random.Random(seed)
    stop = stop or asyncio.Event()
    caused: Counter = Counter()
    kinds = ["work", "expired", "maxlen", "work", "work"]
    handled = itertools.count()

    async def on_message(msg) -> None:
        async with msg.process(ignore_processed=True):
            try:
                body = json.loads(msg.body)
            except (ValueError, UnicodeDecodeError):
                body = None
            nth = next(handled)  # the first two show both ways of failing, then it is random
            if body is not None and (nth == 0 or (nth > 1 and rng.random() < 0.35)):
                await msg.reject(requeue=False)  # the broker dead-letters it: x-death "rejected"
                caused["rejected"] += 1
                return
            failure = _order_failure(rng, body, msg.body)
            frames = ["com.acme.orders.OrderService.place(OrderService.java:88)", "jdk.proxy2.$Proxy81.place"]
            headers = dict(msg.headers or {})
            headers.update(
                {
                    "x-exception-message": failure.message,
                    "x-exception-stacktrace": _stack(
                        failure.fqcn,
                        failure.message,
                        frames,
                        "org.springframework.amqp.rabbit.support.ListenerExecutionFailedException",
                    ),
                    "x-original-exchange": msg.exchange or "",
                    "x-original-routingKey": msg.routing_key or "",
                }
            )
            # Spring AMQP RepublishMessageRecoverer: to the error exchange, confirmed, then ack.
            await dlx.publish(
                Message(
                    msg.body,
                    headers=headers,
                    content_type=msg.content_type,
                    content_encoding=msg.content_encoding,
                    delivery_mode=DeliveryMode.PERSISTENT,
                    message_id=msg.message_id,
                    correlation_id=msg.correlation_id,
                    timestamp=msg.timestamp,
                    type=msg.type,
                    app_id=msg.app_id,
                ),
                routing_key=f"error.{msg.routing_key}",
            )
            await msg.ack()
            caused["recovered"] += 1

    conn = await aio_pika.connect_robust(url, timeout=10)
    try:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.get_exchange(n.exchange)
        worker = await conn.channel(publisher_confirms=True)
        await worker.set_qos(prefetch_count=10)
        dlx = await worker.get_exchange(n.dlx)
        tag = await (await worker.get_queue(n.queue)).consume(on_message)
        worked = 0
        async for i in _ticks(rate=rate, count=count, duration=duration, stop=stop):
            kind = kinds[i] if i < len(kinds) else rng.choice(kinds)
            raw = garbage(rng) if kind == "work" and rng.random() < 0.15 else None
            props = _order_message(rng, "OrderCreated", raw)
            if kind == "work" and raw is None and (i == 3 or rng.random() < 0.2):
                # a publisher that gzips its JSON (the consumer cannot read it: dead-lettered)
                props.update(body=gzip.compress(props["body"]), content_encoding="gzip")
            if kind == "work":
                await ex.publish(Message(**props), rng.choice(["order.created", "order.updated"]))
                worked += 1
            elif kind == "expired":  # nobody confirms the reservation before it expires
                props.update(type="OrderReserved", expiration=RESERVATION_TTL_MS / 1000)
                await ex.publish(Message(**props), "order.reserved")
                caused["expired"] += 1
            else:
                props["type"] = "OrderAudited"
                await ex.publish(Message(**props), "order.audit")
                caused["maxlen"] += 1
        if count is not None:
            done = await _wait_until(lambda: caused["rejected"] + caused["recovered"] >= worked, 30)
            held = await ch.get_queue(n.reservations)

            async def expired() -> bool:
                return (await held.declare()).message_count == 0

            done = done and await _wait_until(expired, 30)
            if not done:
                log.warning("rabbitmq: not every failure happened within 30 s: %s", dict(caused))
        await (await worker.get_queue(n.queue)).cancel(tag)
    finally:
        await conn.close()
    return caused
