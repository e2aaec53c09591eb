"""Hostile input corpus: each item is harvested from a real broker, stored losslessly, rendered
inert, exported and redriven byte-identical (or refused with a clear error)."""

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import aio_pika
import pytest
from aio_pika import DeliveryMode, ExchangeType, Message
from django.urls import reverse

from brokers import headers as codec
from dlqadmin.models import DeadLetter, RedriveAttempt, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.export import record
from dlqadmin.services.harvest.store import source_harvest
from dlqadmin.services.redrive.jobs import redrive_job_create
from dlqadmin.services.redrive.worker import redrive_job_step
from tests.conftest import AMQP_URL, unique
from tests.support import rabbit
from tests.support.kafka import BOOTSTRAP, Record, create_topics, produce, read_topic, spring_headers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SCRIPT = b"<script>alert('xss')</script>"
ATTR = b'"><img src=x onerror=alert(1)>'
JS_URL = b"javascript:alert(document.cookie)"
NESTED = b"[" * 10_000 + b"]" * 10_000
BIG = (b"0123456789abcdef" * (10 * 1024 * 1024 // 16 + 1))[: 10 * 1024 * 1024]

CORPUS = {
    "script": SCRIPT,
    "attribute": ATTR,
    "js-url": JS_URL,
    "nul": b"before\x00after\x00",
    "invalid-utf8": b"\xff\xfe\xc3\x28\x80 not utf-8",
    "nested-json": NESTED,
    "ten-megabytes": BIG,
}
AMQP_HEADERS = {
    "decimal": Decimal("12.345"),
    "timestamp": datetime(2026, 11, 26, 12, 30, 15, tzinfo=UTC),
    "table": {"inner": {"deeper": [1, "two", True]}, "n": 7},
    "bytes": bytearray(b"\x00\x01\xfe\xff"),
    "script": "<script>alert('h')</script>",
    "quote": '"><b onmouseover=alert(2)>',
    "void": None,
}


async def _dead_letter_corpus(top: rabbit.Topology) -> None:
    conn = await aio_pika.connect_robust(AMQP_URL, login="guest", password="guest")
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        dlx = await ch.declare_exchange(top.dlx, ExchangeType.FANOUT)
        dlq = await ch.declare_queue(top.dlq, durable=True)
        await dlq.bind(dlx)
        work = await ch.declare_queue(
            top.work_queue, durable=True, arguments={"x-dead-letter-exchange": top.dlx}
        )
        for name, body in CORPUS.items():
            await ch.default_exchange.publish(
                Message(
                    body,
                    delivery_mode=DeliveryMode.PERSISTENT,
                    message_id=name,
                    content_type="application/json" if name == "nested-json" else "text/plain",
                    headers={"case": name, **AMQP_HEADERS},
                ),
                routing_key=top.work_queue,
            )
        for _ in CORPUS:
            msg = await work.get(no_ack=False, timeout=10)
            await msg.reject(requeue=False)
        for _ in range(300):
            if (await dlq.declare()).message_count >= len(CORPUS):
                break
            await asyncio.sleep(0.05)


def run_job(ids):
    job = redrive_job_create(ids=ids, batch_size=50)
    while redrive_job_step(job_id=job.pk).more:
        pass
    job.refresh_from_db()
    return job


def test_rabbitmq_corpus_is_lossless_inert_exported_and_redriven_identically(client, operator):
    top = rabbit.Topology(
        exchange=unique("ex"), work_queue=unique("work"), dlx=unique("dlx"), dlq=unique("dlq")
    )
    asyncio.run(_dead_letter_corpus(top))
    try:
        conn = connection_create(
            name=unique("rmq"), kind="rabbitmq", url=AMQP_URL, username="guest", password="guest"
        )
        source = Source.objects.create(connection=conn, name=top.dlq, mode="queue", address=top.dlq)
        assert source_harvest(source=source).inserted == len(CORPUS)
        rows = {codec.get(r.headers, "case"): r for r in DeadLetter.objects.filter(source=source)}
        assert set(rows) == set(CORPUS)

        client.force_login(operator)
        for name, body in CORPUS.items():
            row = rows[name]
            # stored losslessly, with AMQP types
            assert bytes(row.payload) == body, name
            stored = codec.decode_mapping(row.headers)
            for key, value in AMQP_HEADERS.items():
                assert stored[key] == value and type(stored[key]) is type(value), (name, key)
            # rendered inert
            page = client.get(reverse("dlq-message", args=[row.pk]))
            assert page.status_code == 200, name
            html = page.content.decode()
            assert "<script>alert(" not in html and "<img src=x" not in html and "<b onmouseover" not in html
            assert 'href="javascript:' not in html
            # exported losslessly
            exported = json.loads(json.dumps(record(row)))
            assert base64.b64decode(exported["payload_b64"]) == body
            assert codec.decode_mapping(exported["headers"]) == stored

        job = run_job(list(DeadLetter.objects.filter(source=source).values_list("id", flat=True)))
        assert (job.succeeded, job.failed) == (len(CORPUS), 0), list(
            RedriveAttempt.objects.filter(job=job).values_list("error", flat=True)
        )
        arrived = {m.message_id: m for m in rabbit.drain(top.work_queue, wait=1)}
        assert set(arrived) == set(CORPUS)
        for name, body in CORPUS.items():
            m = arrived[name]
            assert m.body == body, name
            for key, value in AMQP_HEADERS.items():
                if key == "bytes":
                    assert bytes(m.headers[key]) == bytes(value)
                else:
                    assert m.headers[key] == value, (name, key)
            assert "x-death" not in m.headers and m.headers["x-retry-count"] == 1
    finally:
        rabbit.delete(top)


def test_kafka_hundred_thousand_headers_with_duplicates_and_nulls_round_trip(client, operator):
    dlt, origin = unique("hostile-dlt"), unique("hostile")
    create_topics(dlt, origin)
    hostile = [("x-html", SCRIPT), ("dup", b"one"), ("dup", None), ("dup", b"\xff\x00")]
    # 100 000 headers in all: a record with more arrives with none (librdkafka/tansu cap, not ours)
    count = 100_000 - len(hostile) - len(spring_headers(origin, 0, 5))
    many = [(f"h{i % 50_000}", None if i % 997 == 0 else f"v{i}".encode()) for i in range(count)]
    produce(
        dlt,
        [
            Record(
                value=ATTR + b"\x00\xff",
                key=b"k\x00\xff",
                headers=hostile + many + spring_headers(origin, 0, 5),
            )
        ],
    )
    conn = connection_create(name=unique("kafka"), kind="kafka", url=BOOTSTRAP)
    source = Source.objects.create(
        connection=conn,
        name=dlt,
        mode="topic",
        address=dlt,
        options={"group_id": f"g-{uuid.uuid4().hex[:8]}"},
    )
    assert source_harvest(source=source).inserted == 1
    row = DeadLetter.objects.get(source=source)
    pairs = codec.decode_pairs(row.headers)
    assert pairs[: len(hostile) + len(many)] == hostile + many  # order, duplicates and nulls kept
    assert bytes(row.key) == b"k\x00\xff" and bytes(row.payload) == ATTR + b"\x00\xff"

    client.force_login(operator)
    html = client.get(reverse("dlq-message", args=[row.pk])).content.decode()
    assert "<script>alert(" not in html and "<img src=x" not in html

    job = run_job([row.pk])
    assert job.succeeded == 1, list(RedriveAttempt.objects.filter(job=job).values_list("error", flat=True))
    (arrived,) = read_topic(origin, 1)
    assert arrived.value == ATTR + b"\x00\xff" and arrived.key == b"k\x00\xff"
    sent = [(k, v) for k, v in arrived.headers if not k.startswith(("x-retry", "x-dlq", "x-original"))]
    assert sent == hostile + many  # diagnostics stripped, everything else identical and in order
