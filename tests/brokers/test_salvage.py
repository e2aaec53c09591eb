"""The last resort of a total conversion: when a message cannot be converted at all, the adapter
keeps it raw (body, key, headers, the same position as a normal read, so a redelivery is still a
duplicate) with a note, and never guesses an origin a redrive would follow. Real records and
deliveries from the brokers; the failure itself is the one thing handed in."""

from __future__ import annotations

import asyncio

import aio_pika  # noqa: TID251 - real deliveries, read with the client library
import aiormq  # noqa: TID251
from confluent_kafka import Consumer, TopicPartition  # noqa: TID251

from brokers.kafka import harvest as kafka_harvest
from brokers.rabbitmq import messages as rabbit_messages
from tests.conftest import AMQP_URL, KAFKA_BOOTSTRAP, unique
from tests.support.kafka import Record, create_topics, produce

NOTE = "could not read message: ValueError: unforeseen; stored with its raw bytes only"


def _one_kafka_record(topic: str):
    consumer = Consumer(
        {"bootstrap.servers": KAFKA_BOOTSTRAP, "group.id": unique("g"), "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        for _ in range(40):
            msg = consumer.poll(0.25)
            if msg is not None and msg.error() is None:
                return msg
        raise AssertionError("the record did not arrive")
    finally:
        consumer.close()


def test_a_kafka_record_that_cannot_be_converted_is_kept_raw_with_a_note():
    topic = unique("salvage")
    create_topics(topic)
    produce(
        topic, [Record(value=b"v\xff\x00", key=b"k\xfe", headers=[("kafka_dlt-original-topic", b"orders")])]
    )
    msg = _one_kafka_record(topic)

    normal = kafka_harvest.to_harvested(msg, "cluster")
    raw = kafka_harvest.salvaged(msg, "cluster", ValueError("unforeseen"))

    assert normal.origin.topic == "orders" and normal.read_notes == []
    assert raw.position == normal.position
    assert (raw.payload, raw.key, raw.headers) == (b"v\xff\x00", b"k\xfe", normal.headers)
    assert raw.read_notes == [NOTE] and raw.reason == "unreadable"
    assert raw.origin.topic == "" and raw.origin.partition is None  # a redrive must be told where


async def _one_delivery(queue: str) -> aiormq.abc.DeliveredMessage:
    conn = await aio_pika.connect(AMQP_URL, login="guest", password="guest")
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        await ch.declare_queue(queue, auto_delete=True)
        body = aio_pika.Message(
            b"body \xff\x00", headers={"x-death": "junk", "tenant": "acme"}, message_id="m1"
        )
        await ch.default_exchange.publish(body, routing_key=queue)
        raw = await ch.get_underlay_channel()
        delivered = await raw.basic_get(queue, no_ack=True)
        assert delivered.body, "the message did not arrive"
        return delivered


def test_a_rabbitmq_delivery_that_cannot_be_converted_is_kept_raw_with_a_note():
    queue = unique("salvage")
    delivered = asyncio.run(_one_delivery(queue))

    normal = rabbit_messages.harvested(queue, delivered)
    raw = rabbit_messages.salvaged(queue, delivered, ValueError("unforeseen"))

    assert normal.read_notes == ["could not read x-death: 'junk' is not an array of tables"]
    assert raw.position == normal.position
    assert (raw.payload, raw.headers, raw.properties) == (b"body \xff\x00", normal.headers, normal.properties)
    assert raw.read_notes == [NOTE] and raw.reason == "unreadable" and raw.origin.queue == ""
