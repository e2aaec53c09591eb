"""Poison input: malformed dead letters of every broker, harvested by one real
``manage.py harvest --follow`` process next to healthy sources.

``tests/test_hostile_corpus.py`` covers hostile *payloads* (stored losslessly, rendered inert);
this corpus covers hostile *metadata*, the fields an adapter converts: timestamps in the wrong
unit, integers beyond their column, headers of odd types, x-death that is not x-death, advisories
that are not JSON or name an original that is gone. Each one must be stored once, with its raw
bytes and a visible "could not read" note, while the healthy sources are harvested in full, the
process keeps running, and the brokers hold nothing unacknowledged afterwards.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import aio_pika
import pytest

# The corpus is produced on the real brokers with the client libraries themselves.
from confluent_kafka import Producer  # noqa: TID251
from django.urls import reverse

from brokers import headers as codec
from brokers.base import SourceSpec
from dlqadmin.models import DeadLetter, Source
from tests.api.conftest import token_client
from tests.conftest import AMQP_URL, KAFKA_BOOTSTRAP, NATS_URL, unique
from tests.faults.helpers import (
    kafka_committed,
    kafka_create_topic,
    kafka_dead_letters,
    kafka_delete_topic,
    nats_advisory_dead_letters,
    nats_consumer_state,
    nats_fail_more,
    queue_state,
    stored,
)
from tests.support import rabbit
from tests.support.nats import add_worker, advisory_source, connected
from tests.support.processes import wait_until
from tests.test_hostile_corpus import AMQP_HEADERS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

HEALTHY = 150
MAX_DELIVER = "io.nats.jetstream.advisory.v1.max_deliver"

# case -> (headers, substrings expected among the notes)
RABBIT_POISON: dict[str, tuple[dict, list[str]]] = {
    "retry-huge": ({"x-retry-count": 3_000_000_000}, ["x-retry-count 3000000000 exceeds 2147483647"]),
    "retry-negative": ({"x-retry-count": -5}, ["x-retry-count -5 is negative"]),
    "retry-text": ({"x-retry-count": "lots"}, ["x-retry-count 'lots' is not an integer"]),
    "x-death-text": ({"x-death": "rejected twice"}, ["could not read x-death: 'rejected twice'"]),
    "x-death-junk": (
        {"x-death": [{"count": "many", "time": 5, "queue": "q"}, "junk"]},
        ["x-death count: 'many'", "x-death time: 5 is not a timestamp", "an entry is str"],
    ),
    "odd-types": ({**AMQP_HEADERS, "x-delivery-count": Decimal("2.5")}, []),
    "nul-names": ({"a\x00b": "v", "nested": {"k\x00": 1}}, ["could not read header names"]),
}

# case -> (produce() keywords, substrings expected among the notes)
KAFKA_POISON: dict[str, tuple[dict, list[str]]] = {
    "ts-micro": (
        {"timestamp": 1_733_390_000_000_000},
        [
            "1733390000000000 is not a millisecond timestamp",
            "as microseconds it would be 2024-12-05T09:13:20",
        ],
    ),
    "ts-nano": ({"timestamp": 1_733_390_000_000_000_000}, ["as nanoseconds it would be 2024-12-05T09:13:20"]),
    "ts-negative": ({"timestamp": -5}, ["-5 is a negative millisecond timestamp"]),
    "non-utf8": ({"headers": [("bin", b"\xff\xfe\x00\x80"), ("null", None), ("bin", b"\xc3\x28")]}, []),
    "null-key-value": ({"value": None, "key": None}, []),
    "connect-huge": (
        {
            "headers": [
                ("__connect.errors.topic", b"orders"),
                ("__connect.errors.partition", b"99999999999"),
                ("__connect.errors.offset", b"99999999999999999999999"),
                ("__connect.errors.exception.class.name", b"java.lang.IllegalStateException"),
            ]
        },
        ["origin partition: 99999999999 is outside", "origin offset: 99999999999999999999999 is outside"],
    ),
    "retry-huge": ({"headers": [("x-retry-count", b"3000000000")]}, ["exceeds 2147483647"]),
}


# --------------------------------------------------------------------------------------------
# Producing the corpus


async def _rabbit_poison(queue: str) -> None:
    """Published straight into the DLQ: a buggy producer (or a forwarder) wrote these headers."""
    conn = await aio_pika.connect(AMQP_URL, login="guest", password="guest")
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        await ch.declare_queue(queue, durable=True)
        for case, (headers, _) in RABBIT_POISON.items():
            body = f"rabbit {case} ".encode() + b"\xff\x00"
            message = aio_pika.Message(body, headers={"case": case, **headers})
            await ch.default_exchange.publish(message, routing_key=queue)


def _kafka_poison(topic: str) -> None:
    producer = Producer(
        {"bootstrap.servers": KAFKA_BOOTSTRAP, "acks": "all", "allow.auto.create.topics": False}
    )
    failed: list = []
    for case, (kwargs, _) in KAFKA_POISON.items():
        kwargs = {"value": f"kafka {case} ".encode() + b"\xff", "key": b"k\x00", **kwargs}
        headers = [("case", case.encode()), *kwargs.pop("headers", [])]
        producer.produce(topic, headers=headers, on_delivery=lambda e, _m: e and failed.append(e), **kwargs)
    assert producer.flush(15) == 0 and not failed, failed


async def _nats_poison(created: list) -> tuple[str, dict[bytes, list[str]]]:
    """A watched stream whose capture stream holds forged or broken advisories and one genuine
    MAX_DELIVERIES advisory whose original was deleted since. Returns (stream, advisory bytes ->
    expected notes)."""
    source, subject = await advisory_source(NATS_URL, created)
    stream = source.address
    async with connected(NATS_URL) as (_, js):
        await add_worker(js, stream, max_deliver=1)
    await nats_fail_more(NATS_URL, source, subject, 1, start=0)  # a genuine advisory for seq 1
    advisory = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.worker"

    def event(**fields) -> bytes:
        return json.dumps({"type": MAX_DELIVER, "stream": stream, "consumer": "worker", **fields}).encode()

    forged = {
        b"{not json": ["could not read advisory: invalid JSON"],
        b"\xff\xfe\x00": ["could not read advisory: invalid JSON"],
        b"[1, 2]": ["a JSON list, not an object"],
        event(stream_seq="abc"): ["'abc' is not a stream sequence"],
        event(stream_seq=10**30): ["is not a stream sequence"],
        event(stream="bad name", stream_seq=1): ["'bad name' is not a JetStream stream name"],
    }
    async with connected(NATS_URL) as (nc, js):
        await js.delete_msg(stream, 1)  # the original of the genuine advisory is gone now
        for data in forged:
            await nc.publish(advisory, data)
        await nc.flush()
    return stream, forged


def _rabbit_source(as_admin, queue: str) -> Source:
    return _api_source(
        as_admin,
        {"kind": "rabbitmq", "url": AMQP_URL, "username": "guest", "password": "guest"},
        {"name": queue, "mode": "queue", "address": queue, "options": {"batch_size": 25}},
    )


def _api_source(as_admin, connection: dict, source: dict) -> Source:
    """A connection and a source created the way a user creates them: through the API."""
    response = as_admin.post("/api/v1/connections/", {"name": unique("conn"), **connection}, format="json")
    assert response.status_code == 201, response.content
    response = as_admin.post(
        "/api/v1/sources/", {**source, "connection": response.json()["id"]}, format="json"
    )
    assert response.status_code == 201, response.content
    return Source.objects.get(pk=response.json()["id"])


def _notes_hold(row: DeadLetter, expected: list[str]) -> None:
    joined = "\n".join(row.read_notes)
    for text in expected:
        assert text in joined, (row.position, text, row.read_notes)


# --------------------------------------------------------------------------------------------
# The corpus next to healthy sources, in one harvester process


def test_poison_of_every_broker_is_stored_with_notes_while_healthy_sources_harvest(
    harvesters, nats_streams, admin_user, operator, client, django_user_model
):
    as_admin = token_client(admin_user)
    # RabbitMQ: the poison queue and a genuinely dead-lettered healthy one
    poison_queue, healthy_top = unique("poison-dlq"), rabbit.dead_letter(HEALTHY)
    asyncio.run(_rabbit_poison(poison_queue))
    # Kafka: the poison topic and a Spring-format healthy one
    poison_topic, healthy_topic = unique("poison-dlt"), unique("healthy-dlt")
    kafka_create_topic(KAFKA_BOOTSTRAP, poison_topic)
    kafka_create_topic(KAFKA_BOOTSTRAP, healthy_topic)
    try:
        _kafka_poison(poison_topic)
        kafka_ends = kafka_dead_letters(KAFKA_BOOTSTRAP, healthy_topic, HEALTHY)
        # NATS: forged / broken advisories and genuine ones
        poison_stream, forged = asyncio.run(_nats_poison(nats_streams))
        healthy_spec, _ = nats_advisory_dead_letters(NATS_URL, HEALTHY, nats_streams)

        kafka = {"kind": "kafka", "url": KAFKA_BOOTSTRAP}
        nats = {"kind": "nats", "url": NATS_URL}
        sources = {
            "rabbit-poison": _rabbit_source(as_admin, poison_queue),
            "rabbit-healthy": _rabbit_source(as_admin, healthy_top.dlq),
            "kafka-poison": _api_source(
                as_admin,
                kafka,
                {
                    "name": poison_topic,
                    "mode": "topic",
                    "address": poison_topic,
                    "options": {"group_id": unique("g")},
                },
            ),
            "kafka-healthy": _api_source(
                as_admin,
                kafka,
                {
                    "name": healthy_topic,
                    "mode": "topic",
                    "address": healthy_topic,
                    "options": {"group_id": unique("g")},
                },
            ),
            "nats-poison": _api_source(
                as_admin, nats, {"name": poison_stream, "mode": "advisory", "address": poison_stream}
            ),
            "nats-healthy": _api_source(
                as_admin,
                nats,
                {"name": healthy_spec.name, "mode": "advisory", "address": healthy_spec.address},
            ),
        }
        expected = {
            "rabbit-poison": len(RABBIT_POISON),
            "rabbit-healthy": HEALTHY,
            "kafka-poison": len(KAFKA_POISON),
            "kafka-healthy": HEALTHY,
            "nats-poison": len(forged) + 1,
            "nats-healthy": HEALTHY,
        }

        proc = harvesters([s.name for s in sources.values()])
        everything = lambda: all(stored(sources[k]) >= n for k, n in expected.items())  # noqa: E731
        assert wait_until(everything, 90), ({k: stored(s) for k, s in sources.items()}, proc.log()[-3000:])
        assert proc.alive(), proc.log()[-3000:]
        assert {k: stored(s) for k, s in sources.items()} == expected  # each stored exactly once

        # RabbitMQ: raw bytes, the odd types kept, the notes
        rows = {
            codec.get(r.headers, "case"): r
            for r in DeadLetter.objects.filter(source=sources["rabbit-poison"])
        }
        assert set(rows) == set(RABBIT_POISON)
        for case, (_, notes) in RABBIT_POISON.items():
            assert bytes(rows[case].payload) == f"rabbit {case} ".encode() + b"\xff\x00"
            _notes_hold(rows[case], notes)
        assert rows["retry-huge"].retry_count == 2**31 - 1 and rows["retry-negative"].retry_count == 0
        odd = codec.decode_mapping(rows["odd-types"].headers)
        assert all(odd[k] == v and type(odd[k]) is type(v) for k, v in AMQP_HEADERS.items())
        assert (
            rows["odd-types"].read_notes == [] and rows["odd-types"].origin_extra["delivery_count"] == "2.5"
        )
        assert codec.decode_mapping(rows["nul-names"].headers)["a\ufffdb"] == "v"

        # Kafka: raw value / key / headers, failed_at falls back, the origin ints dropped
        rows = {
            codec.get_text(r.headers, "case"): r
            for r in DeadLetter.objects.filter(source=sources["kafka-poison"])
        }
        assert set(rows) == set(KAFKA_POISON)
        for case, (kwargs, notes) in KAFKA_POISON.items():
            row = rows[case]
            value = kwargs.get("value", f"kafka {case} ".encode() + b"\xff")
            key = bytes(row.key) if row.key is not None else None
            assert bytes(row.payload) == (value or b"") and key == kwargs.get("key", b"k\x00")
            _notes_hold(row, notes)
        assert codec.decode_pairs(rows["non-utf8"].headers)[1:] == KAFKA_POISON["non-utf8"][0]["headers"]
        assert rows["null-key-value"].properties["value_is_null"] is True
        assert rows["ts-micro"].properties["timestamp"] == 1_733_390_000_000_000  # the raw value is kept
        assert rows["ts-micro"].failed_at == rows["ts-micro"].harvested_at  # the harvest time instead
        assert rows["connect-huge"].origin_partition is None and rows["connect-huge"].origin_offset is None
        assert rows["connect-huge"].error_class == "java.lang.IllegalStateException"

        # NATS: broken advisories stored as captured; the gone original as metadata
        rows = list(DeadLetter.objects.filter(source=sources["nats-poison"]))
        by_payload = {bytes(r.payload): r for r in rows if r.properties.get("payload_is_advisory")}
        assert set(by_payload) == set(forged)
        for data, notes in forged.items():
            _notes_hold(by_payload[data], [*notes, "the payload is the advisory as captured"])
        (gone,) = [r for r in rows if not r.payload_available]
        assert gone.position == f"{poison_stream}:1:worker" and gone.origin_seq == 1
        _notes_hold(gone, ["could not read payload: payload no longer available on the broker"])

        # the notes reach the user: message page, API detail, Django admin
        micro = DeadLetter.objects.get(source=sources["kafka-poison"], position__endswith="@1733390000000000")
        note = next(n for n in micro.read_notes if "microseconds" in n)
        client.force_login(operator)
        page = client.get(reverse("dlq-message", args=[micro.pk])).content.decode()
        assert "Could not read everything" in page and note in page.replace("&#x27;", "'")
        api = token_client(operator).get(f"/api/v1/messages/{micro.pk}/").json()
        assert api["read_notes"] == micro.read_notes
        root = django_user_model.objects.create_superuser("poison-root", "root@example.com", "root-pass-123")
        client.force_login(root)
        admin_page = client.get(reverse("admin:dlqadmin_deadletter_change", args=[micro.pk])).content.decode()
        assert note in admin_page.replace("&#x27;", "'")

        assert proc.stop() == 0, "the harvester must still stop cleanly"
        # acked only what was committed: nothing stored is left on the brokers, nothing lost
        assert queue_state(AMQP_URL, poison_queue) == (0, 0)
        assert queue_state(AMQP_URL, healthy_top.dlq) == (0, 0)
        assert (
            kafka_committed(KAFKA_BOOTSTRAP, sources["kafka-healthy"].options["group_id"], healthy_topic, 1)
            == kafka_ends
        )
        poison_group = sources["kafka-poison"].options["group_id"]
        assert kafka_committed(KAFKA_BOOTSTRAP, poison_group, poison_topic, 1) == {0: len(KAFKA_POISON)}
        assert nats_consumer_state(NATS_URL, healthy_spec) == (0, 0)
        poison_spec = SourceSpec(name=poison_stream, mode="advisory", address=poison_stream)
        assert nats_consumer_state(NATS_URL, poison_spec) == (0, 0)
    finally:
        kafka_delete_topic(KAFKA_BOOTSTRAP, poison_topic)
        kafka_delete_topic(KAFKA_BOOTSTRAP, healthy_topic)
        rabbit.delete(healthy_top)
        asyncio.run(_delete_queue(poison_queue))


async def _delete_queue(queue: str) -> None:
    conn = await aio_pika.connect(AMQP_URL, login="guest", password="guest")
    async with conn:
        ch = await conn.channel()
        await ch.queue_delete(queue)
