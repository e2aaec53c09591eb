"""Demo traffic: create demo topologies and produce *genuine* dead letters on each broker.

Used by ``manage.py seed_demo`` (topology), ``make demo`` (continuous traffic) and the tests
(bounded runs). It lives in ``brokers/`` because only this package may import aio-pika,
confluent-kafka and nats-py; each client is imported lazily, so a run that skips a broker never
loads its library. Every resource name starts with ``prefix``, so a test run never collides with
another test or with a running demo.

What each broker gets (every message is a realistic order / payment / customer / shipment, a
few are not JSON at all; error texts vary in ids and numbers so they group into a handful of
error groups):

RabbitMQ (``<prefix>.orders*``)
    A direct exchange feeding a work queue whose ``x-dead-letter-exchange`` is a fanout DLX that
    routes to the DLQ. A fake ``orders-service`` consumer either rejects (``requeue=false``: the
    broker dead-letters it with ``x-death`` reason ``rejected``) or, like Spring AMQP's
    ``RepublishMessageRecoverer``, publishes it to the DLX with ``x-exception-*`` and
    ``x-original-*`` headers and acks it. Reservations expire unconsumed (per-message TTL:
    ``expired``) and a full, length-limited audit queue drops its oldest (``maxlen``).
Kafka (``<prefix>.payments``, ``.payments-dlt``, ``.customers``, ``.connect-dlq``)
    Each failure first produces the original record, then its dead letter in the exact format of
    Spring Kafka's ``DeadLetterPublishingRecoverer`` (``kafka_dlt-*``, original partition and
    offset) or of a Kafka Connect sink's DLQ (``__connect.errors.*`` context headers).
NATS JetStream (stream ``<PREFIX>_SHIPMENTS``, subjects ``<prefix>.shipments.>``)
    A Limits-retention stream (``allow_direct``) and a pull consumer with ``max_deliver=2``. The
    worker terminates some messages with ``+TERM <reason>`` (a plain ``+TERM`` on servers older
    than 2.10.4, which ignore reasons) and naks the rest until ``MAX_DELIVERIES`` fires. The
    advisory capture stream must exist first: the adapter's ``prepare()`` creates it.

Command line (what ``make demo`` runs; SIGTERM / Ctrl-C stop it cleanly)::

    python -m brokers.simulate --nats-url nats://127.0.0.1:14222 --kafka-bootstrap 127.0.0.1:19092 \
        [--rabbitmq-url amqp://guest:guest@127.0.0.1:5672/] [--prefix demo] [--rate 2] \
        [--count N] [--duration SECONDS] [--setup]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import random
import re
import signal
import struct
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger("brokers.simulate")

_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")


def check_prefix(prefix: str) -> str:
    """Prefixes end up in queue, topic, subject and stream names: keep them portable."""
    if not _PREFIX_RE.match(prefix) or ".." in prefix or prefix.endswith("."):
        raise ValueError(f"invalid prefix {prefix!r}: use letters, digits, '.', '_' and '-'")
    return prefix


# --------------------------------------------------------------------------------------------
# Realistic payloads and failures

_FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory"]
_DOMAINS = ["example.com", "example.org", "mail.example.net", "shop.example"]
_SKUS = ["SKU-1001", "SKU-1002", "SKU-2040", "SKU-3310", "SKU-4096", "SKU-7777"]
_CARRIERS = ["dhl", "ups", "fedex", "postnl", "royalmail"]
_CURRENCIES = ["EUR", "USD", "GBP"]


def _email(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)}.{rng.randint(1, 999)}@{rng.choice(_DOMAINS)}"


def _trace(rng: random.Random) -> str:
    return f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"


def order(rng: random.Random) -> dict:
    lines = [
        {"sku": rng.choice(_SKUS), "qty": rng.randint(1, 4), "unit_price": round(rng.uniform(3, 250), 2)}
        for _ in range(rng.randint(1, 3))
    ]
    return {
        "order_id": rng.randint(10000, 99999),
        "customer": {"id": f"cus_{rng.getrandbits(40):010x}", "email": _email(rng)},
        "lines": lines,
        "total": round(sum(line["qty"] * line["unit_price"] for line in lines), 2),
        "currency": rng.choice(_CURRENCIES),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def payment(rng: random.Random) -> dict:
    return {
        "payment_id": f"pay_{rng.getrandbits(48):012x}",
        "order_id": rng.randint(10000, 99999),
        "amount": round(rng.uniform(5, 900), 2),
        "currency": rng.choice(_CURRENCIES),
        "card": {"brand": rng.choice(["visa", "mastercard", "amex"]), "last4": f"{rng.randint(0, 9999):04d}"},
        "customer_email": _email(rng),
    }


def customer(rng: random.Random) -> dict:
    return {
        "id": rng.randint(1000, 9999),
        "email": _email(rng),
        "name": rng.choice(_FIRST).title(),
        "country": rng.choice(["NL", "DE", "GB", "US", "FR"]),
        "marketing_opt_in": rng.random() < 0.4,
    }


def shipment(rng: random.Random) -> dict:
    return {
        "shipment_id": f"shp_{rng.getrandbits(40):010x}",
        "order_id": rng.randint(10000, 99999),
        "carrier": rng.choice(_CARRIERS),
        "weight_kg": round(rng.uniform(0.2, 40), 1),
        "address": {"postcode": f"{rng.randint(10000, 99999)}", "country": rng.choice(["NL", "DE", "US"])},
    }


def garbage(rng: random.Random) -> bytes:
    """What real queues also carry: truncated JSON, XML from a legacy producer, binary blobs."""
    oid = rng.randint(10000, 99999)
    return rng.choice(
        [
            f'{{"order_id": {oid}, "total": '.encode(),
            f'<order id="{oid}"><total>12.50</total></order>'.encode(),
            b"\x08\x96\x01\x12\x07" + rng.randbytes(24),  # protobuf where JSON was expected
            b"\x1f\x8b\x08\x00" + rng.randbytes(32),  # gzip someone forgot to declare
        ]
    )


def _json_error_position(body: bytes) -> int:
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return getattr(exc, "pos", None) or getattr(exc, "start", 0)
    return 0


def _stack(fqcn: str, message: str, frames: list[str], wrapper: str = "") -> str:
    lines = [f"{fqcn}: {message}"] + [f"\tat {frame}" for frame in frames]
    if wrapper:
        lines = [f"{wrapper}: Listener threw exception", "\tat " + frames[-1], "Caused by: " + lines[0]]
        lines += [f"\tat {frame}" for frame in frames]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Failure:
    fqcn: str
    message: str


def _order_failure(rng: random.Random, body: dict | None, raw: bytes) -> Failure:
    if body is None:
        return Failure(
            "com.fasterxml.jackson.core.JsonParseException",
            f"JSON parse error at position {_json_error_position(raw)}",
        )
    oid = body.get("order_id", 0)
    return rng.choice(
        [
            Failure("com.acme.orders.OrderNotFoundException", f"Order {oid} not found"),
            Failure(
                "java.util.concurrent.TimeoutException",
                f"Timeout after {rng.choice([3000, 5000])}ms calling inventory-service",
            ),
            Failure(
                "com.acme.orders.InsufficientStockException",
                f"Insufficient stock for {rng.choice(_SKUS)}: requested {rng.randint(2, 9)}, "
                f"available {rng.randint(0, 1)}",
            ),
        ]
    )


# --------------------------------------------------------------------------------------------
# Pacing


async def _ticks(
    *, rate: float, count: int | None, duration: float | None, stop: asyncio.Event
) -> AsyncIterator[int]:
    """Yield 0, 1, 2, ... about ``rate`` times a second until count, duration or ``stop``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    i = 0
    while not stop.is_set() and (count is None or i < count):
        if duration is not None and loop.time() - start >= duration:
            return
        yield i
        i += 1
        delay = start + i / rate - loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)


async def _wait_until(check: Callable[[], Awaitable[bool] | bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(0.1)
    return False


# --------------------------------------------------------------------------------------------
# RabbitMQ


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


# --------------------------------------------------------------------------------------------
# Kafka


@dataclass(frozen=True)
class KafkaNames:
    payments: str
    payments_dlt: str
    customers: str
    connect_dlq: str


PAYMENTS_GROUP = "payments-service"
CONNECTOR = "customers-jdbc-sink"


def kafka_names(prefix: str) -> KafkaNames:
    p = check_prefix(prefix)
    return KafkaNames(f"{p}.payments", f"{p}.payments-dlt", f"{p}.customers", f"{p}.connect-dlq")


def kafka_setup(bootstrap: str, *, prefix: str, partitions: int = 3) -> KafkaNames:
    """Create the four topics (idempotent; blocking)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    n = kafka_names(prefix)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [n.payments, n.payments_dlt, n.customers, n.connect_dlq]
    futures = admin.create_topics([NewTopic(t, partitions, 1) for t in topics], operation_timeout=10)
    for topic, fut in futures.items():
        try:
            fut.result(15)
        except Exception as exc:
            if "already exists" not in str(exc).lower():
                raise RuntimeError(f"cannot create Kafka topic {topic}: {exc}") from exc
    return n


def _payment_failure(rng: random.Random, body: dict | None, raw: bytes) -> tuple[str, Failure | None]:
    """(exception fqcn, root cause) as Spring Kafka's error handler would report them."""
    if body is None:
        return (
            "org.springframework.kafka.support.serializer.DeserializationException",
            Failure(
                "com.fasterxml.jackson.core.JsonParseException",
                f"JSON parse error at position {_json_error_position(raw)}",
            ),
        )
    cause = rng.choice(
        [
            Failure(
                "com.acme.payments.PaymentDeclinedException",
                f"Payment declined: card ending {body['card']['last4']}",
            ),
            Failure(
                "java.util.concurrent.TimeoutException",
                f"Timeout after {rng.choice([2000, 3000])}ms calling fraud-service",
            ),
            Failure(
                "org.springframework.dao.DuplicateKeyException",
                f"Duplicate payment {body['payment_id']} for order {body['order_id']}",
            ),
        ]
    )
    return "org.springframework.kafka.listener.ListenerExecutionFailedException", cause


def _connect_failure(rng: random.Random, body: dict | None) -> dict[str, str]:
    if body is None:
        return {
            "stage": "VALUE_CONVERTER",
            "class.name": "org.apache.kafka.connect.json.JsonConverter",
            "exception.class.name": "org.apache.kafka.connect.errors.DataException",
            "exception.message": (
                "Converting byte[] to Kafka Connect data failed due to serialization error: "
            ),
        }
    if rng.random() < 0.5:
        return {
            "stage": "TASK_PUT",
            "class.name": "io.confluent.connect.jdbc.sink.JdbcSinkTask",
            "exception.class.name": "org.apache.kafka.connect.errors.ConnectException",
            "exception.message": (
                f"java.sql.BatchUpdateException: Batch entry {rng.randint(0, 49)} INSERT INTO "
                '"customers" was aborted: ERROR: duplicate key value violates unique constraint '
                f'"customers_email_key" Detail: Key (email)=({body["email"]}) already exists.'
            ),
        }
    return {
        "stage": "TRANSFORMATION",
        "class.name": "org.apache.kafka.connect.transforms.Cast$Value",
        "exception.class.name": "org.apache.kafka.connect.errors.DataException",
        "exception.message": f"Cannot cast field 'id' value {body['id']}x to INT32",
    }


def _produce(producer, topic: str, **kwargs):
    """Produce one record and wait for its delivery report (blocking)."""
    result: list = []
    producer.produce(topic, on_delivery=lambda err, msg: result.append((err, msg)), **kwargs)
    producer.flush(30)
    if not result:
        raise RuntimeError(f"no delivery report from Kafka for {topic}")
    err, msg = result[0]
    if err is not None:
        raise RuntimeError(f"produce to {topic} failed: {err}")
    return msg


def _kafka_fail_one(producer, n: KafkaNames, rng: random.Random, spring: bool) -> str:
    raw = garbage(rng) if rng.random() < 0.15 else None
    if spring:
        body = None if raw else payment(rng)
        value = raw or json.dumps(body).encode()
        key = f"order-{body['order_id'] if body else rng.randint(10000, 99999)}".encode()
        headers = [
            ("__TypeId__", b"com.acme.payments.PaymentRequested"),
            ("traceparent", _trace(rng).encode()),
        ]
        orig = _produce(producer, n.payments, key=key, value=value, headers=headers)
        fqcn, cause = _payment_failure(rng, body, value)
        message = (
            f"Listener failed; {cause.message}"
            if fqcn.endswith("ListenerExecutionFailedException")
            else (f"failed to deserialize; nested exception is {cause.message}")
        )
        frames = ["com.acme.payments.PaymentListener.onPayment(PaymentListener.java:57)"]
        _ts_type, ts = orig.timestamp()
        _produce(
            producer,
            n.payments_dlt,
            key=key,
            value=value,
            partition=orig.partition(),  # Spring's default: the same partition as the original
            headers=headers
            + [
                ("kafka_dlt-original-topic", n.payments.encode()),
                ("kafka_dlt-original-partition", struct.pack(">i", orig.partition())),
                ("kafka_dlt-original-offset", struct.pack(">q", orig.offset())),
                ("kafka_dlt-original-timestamp", struct.pack(">q", ts)),
                ("kafka_dlt-original-timestamp-type", b"CreateTime"),
                ("kafka_dlt-original-consumer-group", PAYMENTS_GROUP.encode()),
                ("kafka_dlt-exception-fqcn", fqcn.encode()),
                ("kafka_dlt-exception-cause-fqcn", cause.fqcn.encode()),
                ("kafka_dlt-exception-message", message.encode()),
                ("kafka_dlt-exception-stacktrace", _stack(fqcn, message, frames).encode()),
            ],
        )
        return "spring"
    body = None if raw else customer(rng)
    value = raw or json.dumps(body).encode()
    key = f"customer-{body['id'] if body else rng.randint(1000, 9999)}".encode()
    headers = [("source-system", b"crm"), ("traceparent", _trace(rng).encode())]
    orig = _produce(producer, n.customers, key=key, value=value, headers=headers)
    context = {
        "topic": n.customers,
        "partition": str(orig.partition()),
        "offset": str(orig.offset()),
        "connector.name": CONNECTOR,
        "task.id": str(orig.partition() % 2),
        **_connect_failure(rng, body),
    }
    context["exception.stacktrace"] = (
        f"{context['exception.class.name']}: {context['exception.message']}\n"
        "\tat org.apache.kafka.connect.runtime.WorkerSinkTask.convertAndTransformRecord"
        "(WorkerSinkTask.java:545)\n"
    )
    _produce(
        producer,
        n.connect_dlq,
        key=key,
        value=value,
        headers=headers + [(f"__connect.errors.{k}", v.encode()) for k, v in context.items()],
    )
    return "connect"


async def kafka_traffic(
    bootstrap: str,
    *,
    prefix: str,
    rate: float = 2.0,
    count: int | None = None,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    seed: int | None = None,
) -> Counter:
    """Produce failing payments (Spring DLT format) and customers (Connect DLQ format).

    Returns a Counter by format (``spring``, ``connect``); every record is acked by the broker
    before the function returns."""
    from confluent_kafka import Producer

    n = kafka_names(prefix)
    rng = random.Random(seed)
    stop = stop or asyncio.Event()
    caused: Counter = Counter()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",  # what a Java producer would pick for these keys
            "client.id": "dlqadmin-demo-traffic",
        }
    )
    try:
        async for i in _ticks(rate=rate, count=count, duration=duration, stop=stop):
            spring = i % 2 == 0 if i < 2 else rng.random() < 0.6
            caused[await asyncio.to_thread(_kafka_fail_one, producer, n, rng, spring)] += 1
    finally:
        await asyncio.to_thread(producer.flush, 10)
    return caused


# --------------------------------------------------------------------------------------------
# NATS JetStream


@dataclass(frozen=True)
class NatsNames:
    stream: str
    subjects: str
    consumer: str


def nats_names(prefix: str) -> NatsNames:
    p = check_prefix(prefix)
    stream = re.sub(r"[^A-Za-z0-9_-]", "_", p).upper() + "_SHIPMENTS"
    return NatsNames(stream, f"{p}.shipments", "shipment-worker")


async def nats_setup(url: str, *, prefix: str) -> NatsNames:
    """Create (or update) the shipments work stream and its failing consumer. Idempotent.

    The advisory capture stream is not created here: the NATS adapter's ``prepare()`` owns it
    (``seed_demo`` calls it), and it must exist before the first failure."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
    from nats.js.errors import BadRequestError

    n = nats_names(prefix)
    config = StreamConfig(
        name=n.stream,
        subjects=[f"{n.subjects}.>"],
        retention=RetentionPolicy.LIMITS,  # keeps failed payloads for the harvester (term = ack elsewhere)
        allow_direct=True,
        max_age=7 * 86400,
        max_msgs=200_000,
    )
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        try:
            await js.add_stream(config)
        except BadRequestError:  # exists with another config
            await js.update_stream(config)
        await js.add_consumer(
            n.stream,
            ConsumerConfig(
                durable_name=n.consumer, ack_policy=AckPolicy.EXPLICIT, max_deliver=2, ack_wait=30
            ),
        )
    finally:
        await nc.close()
    return n


def _term_reason(rng: random.Random, data: bytes) -> str:
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return f"JSON parse error at position {_json_error_position(data)}"
    return rng.choice(
        [
            f"Shipment {body['order_id']} not found",
            f"Address validation failed for postcode {body['address']['postcode']}",
            f"Carrier '{body['carrier']}' rejected label: weight {body['weight_kg']}kg is over the limit",
        ]
    )


async def nats_traffic(
    url: str,
    *,
    prefix: str,
    rate: float = 2.0,
    count: int | None = None,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    seed: int | None = None,
) -> Counter:
    """Publish shipments; the worker terminates some (``terminated``) and naks the rest until
    ``max_deliver`` (``max_deliveries``). Returns a Counter by kind."""
    import nats
    from nats.errors import TimeoutError as NatsTimeout

    n = nats_names(prefix)
    rng = random.Random(seed)
    stop = stop or asyncio.Event()
    caused: Counter = Counter()
    nc = await nats.connect(url, connect_timeout=5, name="dlqadmin-demo-traffic")
    version = nc.connected_server_version
    # Servers before 2.10.4 ignore "+TERM <reason>" completely; a plain +TERM works everywhere.
    reasons = (version.major, version.minor, version.patch) >= (2, 10, 4)
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind(n.consumer, stream=n.stream)
    published = 0
    firsts = itertools.count()

    async def work() -> None:
        while True:
            try:
                # A waiting pull is also what makes max_deliver fire promptly on older servers.
                msgs = await sub.fetch(10, timeout=1)
            except NatsTimeout:
                continue
            for msg in msgs:
                delivered = msg.metadata.num_delivered
                nth = next(firsts) if delivered == 1 else -1  # the first two show both ways
                if nth == 0 or (nth > 1 and rng.random() < 0.55):
                    if reasons:
                        await nc.publish(msg.reply, f"+TERM {_term_reason(rng, msg.data)}".encode())
                    else:
                        await msg.term()
                    caused["terminated"] += 1
                else:  # e.g. the carrier API is down: retry, until max_deliver gives up
                    await msg.nak()
                    if delivered >= 2:
                        caused["max_deliveries"] += 1

    worker = asyncio.create_task(work())
    try:
        async for _ in _ticks(rate=rate, count=count, duration=duration, stop=stop):
            raw = garbage(rng) if rng.random() < 0.15 else None
            body = raw or json.dumps(shipment(rng)).encode()
            event = rng.choice(["created", "label_requested", "dispatched"])
            await js.publish(
                f"{n.subjects}.{event}",
                body,
                stream=n.stream,
                headers={
                    "Nats-Msg-Id": str(uuid.uuid4()),
                    "content-type": "application/octet-stream" if raw else "application/json",
                    "tenant": rng.choice(["acme", "globex", "initech"]),
                    "traceparent": _trace(rng),
                },
            )
            published += 1
        if count is not None:
            if not await _wait_until(lambda: sum(caused.values()) >= published, 30):
                log.warning("nats: not every failure happened within 30 s: %s", dict(caused))
            await asyncio.sleep(0.5)  # let the last naks reach max_deliver
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await nc.close()
    return caused


# --------------------------------------------------------------------------------------------
# Command line


async def _until_stopped(name: str, run: Callable[[], Awaitable[Counter]], stop: asyncio.Event) -> None:
    """Keep one broker's traffic going; a broker hiccup is logged and retried, not fatal."""
    delay = 1.0
    while not stop.is_set():
        try:
            caused = await run()
            log.info("%s: stopped after %s", name, dict(caused))
            return
        except Exception as exc:  # noqa: BLE001 - keep the demo alive through broker restarts
            log.warning("%s traffic failed (%s); retrying in %.0fs", name, exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30)


async def main(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    common = {"prefix": args.prefix, "rate": args.rate, "count": args.count, "duration": args.duration}
    runs: dict[str, Callable[[], Awaitable[Counter]]] = {}
    if args.rabbitmq_url:
        if args.setup:
            await rabbitmq_setup(args.rabbitmq_url, prefix=args.prefix)
        runs["rabbitmq"] = lambda: rabbitmq_traffic(args.rabbitmq_url, stop=stop, **common)
    if args.kafka_bootstrap:
        if args.setup:
            await asyncio.to_thread(kafka_setup, args.kafka_bootstrap, prefix=args.prefix)
        runs["kafka"] = lambda: kafka_traffic(args.kafka_bootstrap, stop=stop, **common)
    if args.nats_url:
        if args.setup:
            await nats_setup(args.nats_url, prefix=args.prefix)
        runs["nats"] = lambda: nats_traffic(args.nats_url, stop=stop, **common)
    if not runs:
        log.error("nothing to do: give at least one of --rabbitmq-url, --kafka-bootstrap, --nats-url")
        return 2
    log.info(
        "producing about %.1f dead letters/s on each of %s (prefix %r); SIGTERM or Ctrl-C stops",
        args.rate,
        ", ".join(runs),
        args.prefix,
    )
    if args.count is not None or args.duration is not None:
        results = await asyncio.gather(*(run() for run in runs.values()))
        for name, caused in zip(runs, results, strict=True):
            log.info("%s: %s", name, dict(caused))
        return 0
    await asyncio.gather(*(_until_stopped(name, run, stop) for name, run in runs.items()))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m brokers.simulate", description=__doc__.split("\n")[0])
    parser.add_argument("--rabbitmq-url", help="amqp://user:pass@host:5672/vhost (skip RabbitMQ if absent)")
    parser.add_argument("--kafka-bootstrap", help="host:port[,host:port] (skip Kafka if absent)")
    parser.add_argument("--nats-url", help="nats://host:4222 (skip NATS if absent)")
    parser.add_argument("--prefix", default="demo", help="resource name prefix (default: demo)")
    parser.add_argument("--rate", type=float, default=2.0, help="dead letters per second per broker")
    parser.add_argument("--count", type=int, help="stop after this many failures per broker")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--setup", action="store_true", help="create the topology first (idempotent)")
    args = parser.parse_args(argv)
    try:
        check_prefix(args.prefix)
    except ValueError as exc:
        parser.error(str(exc))
    if args.rate <= 0:
        parser.error("--rate must be positive")
    return args


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(asyncio.run(main(parse_args())))
