"""Kafka demo: failing payments (Spring Kafka DLT format) and customers (Kafka Connect DLQ).

Each failure first produces the original record, then its dead letter with the original
partition and offset. confluent-kafka is imported lazily.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
from collections import Counter
from dataclasses import dataclass

from .common import _ticks, check_prefix
from .payloads import (
    _connect_failure,
    _payment_failure,
    _stack,
    _trace,
    avro_payment,
    customer,
    garbage,
    payment,
)


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


def _kafka_fail_one(producer, n: KafkaNames, rng: random.Random, spring: bool, avro: bool = False) -> str:
    raw = garbage(rng) if rng.random() < 0.15 else None
    if spring:
        body = None if raw else payment(rng)
        value = raw or json.dumps(body).encode()
        key = f"order-{body['order_id'] if body else rng.randint(10000, 99999)}".encode()
        headers = [
            ("__TypeId__", b"com.acme.payments.PaymentRequested"),
            ("traceparent", _trace(rng).encode()),
        ]
        if avro and body is not None:  # an Avro producer: bare records, decoded by the stored schema
            value = avro_payment(body)
            headers.append(("content-type", b"application/avro"))
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
            avro = i == 0 or (spring and rng.random() < 0.25)
            caused[await asyncio.to_thread(_kafka_fail_one, producer, n, rng, spring, avro)] += 1
    finally:
        await asyncio.to_thread(producer.flush, 10)
    return caused
