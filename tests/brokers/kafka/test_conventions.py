"""Kafka dead-letter conventions: the context Spring Kafka, Spring Cloud Stream and Kafka Connect
put in headers becomes origin and error, from genuine records and as pure parsing."""

from __future__ import annotations

import struct
import time

from brokers import headers
from brokers.kafka import conventions
from tests.brokers.contract import Sent, run
from tests.brokers.kafka.harness import KafkaHarness
from tests.conftest import unique
from tests.support.kafka import (
    CAUSE,
    CONNECT,
    ORIGINAL_OFFSET,
    ORIGINAL_TS,
    STACK,
    WRAPPER,
    Record,
    create_topics,
    fresh_source,
    harvest,
    produce,
    spring_headers,
)


class TestKafkaConventions(KafkaHarness):
    def test_spring_dead_letter_context_is_decoded_from_binary_headers(self):
        sent = [Sent(b'{"order": 7}', b"order-7", {"tenant": "acme"})]
        source = run(self.dead_letter(sent))
        started = time.time()
        (m,) = run(harvest(source)).messages
        source_topic = source.address.removesuffix("-dlt")
        assert m.origin.topic == source_topic
        assert m.origin.partition == 0 and m.origin.offset == ORIGINAL_OFFSET
        assert m.origin.extra["format"] == "spring"
        assert m.origin.extra["consumer_group"] == "orders-svc"
        assert m.origin.extra["original_timestamp"] == ORIGINAL_TS
        assert m.origin.extra["original_timestamp_type"] == "CreateTime"
        assert m.origin.extra["exception_fqcn"] == WRAPPER
        assert m.reason == "exception"
        assert m.error_class == CAUSE  # the root cause, not Spring's wrapper
        assert m.error_message == "Listener method failed; nested exception is boom"
        assert m.stacktrace == STACK
        assert abs(m.failed_at.timestamp() - started) < 60
        cluster = m.properties["cluster_id"]
        assert m.position == f"{cluster}/{source.address}/0/0@{m.properties['timestamp']}"
        assert m.properties["topic"] == source.address
        assert m.properties["partition"] == 0 and m.properties["offset"] == 0
        assert m.properties["timestamp_type"] == "CreateTime"
        assert m.key == b"order-7" and m.retry_count == 0
        # the stored headers are exactly what the broker holds, Spring's binary ints included
        assert headers.get(m.headers, "kafka_dlt-original-offset") == struct.pack(">q", ORIGINAL_OFFSET)

    def test_redead_lettered_spring_record_uses_the_newest_original_headers(self):
        dlt = unique("kafka") + "-dlt"
        create_topics(dlt)
        older = spring_headers("orders-v1", 5, 1)
        newer = spring_headers("orders-v2", 0, 77)[:3]
        produce(dlt, [Record(b"again", headers=older + newer)])
        (m,) = run(harvest(fresh_source(dlt))).messages
        assert (m.origin.topic, m.origin.partition, m.origin.offset) == ("orders-v2", 0, 77)

    def test_connect_dead_letter_context_is_parsed(self):
        source_topic = unique("kafka")
        dlq = f"{source_topic}.connect-dlq"
        create_topics(dlq)
        context = {"topic": source_topic, **CONNECT}
        hdrs = [("tenant", b"acme")] + [(f"__connect.errors.{k}", v.encode()) for k, v in context.items()]
        produce(dlq, [Record(b"{not json", b"order-43", hdrs)])
        (m,) = run(harvest(fresh_source(dlq))).messages
        assert (m.origin.topic, m.origin.partition, m.origin.offset) == (source_topic, 3, 18)
        assert m.origin.extra == {
            "format": "connect",
            "connector": "jdbc-sink",
            "task": 0,
            "stage": "VALUE_CONVERTER",
            "class_name": "org.apache.kafka.connect.json.JsonConverter",
        }
        assert m.reason == "value_converter"
        assert m.error_class == "org.apache.kafka.connect.errors.DataException"
        assert m.error_message == CONNECT["exception.message"]
        assert m.stacktrace == CONNECT["exception.stacktrace"]


def encoded(*pairs) -> list:
    return headers.encode_pairs(pairs)


def test_spring_cloud_stream_headers_are_read_as_decimal_or_binary():
    binary = conventions.parse(
        encoded(
            ("x-original-topic", b"orders"),
            ("x-original-partition", struct.pack(">i", 4)),
            ("x-original-offset", struct.pack(">q", 2**40)),
            ("x-original-timestamp", struct.pack(">q", ORIGINAL_TS)),
            ("x-exception-fqcn", b"java.lang.RuntimeException"),
            ("x-exception-message", b"nope"),
            ("x-exception-stacktrace", b"at X"),
        )
    )
    assert binary.format == "spring-cloud-stream" and binary.reason == "exception"
    assert (binary.origin.topic, binary.origin.partition, binary.origin.offset) == ("orders", 4, 2**40)
    assert binary.origin.extra["original_timestamp"] == ORIGINAL_TS
    assert (binary.error_class, binary.error_message, binary.stacktrace) == (
        "java.lang.RuntimeException",
        "nope",
        "at X",
    )
    text = conventions.parse(
        encoded(
            ("x-original-topic", b"orders"), ("x-original-partition", b"12"), ("x-original-offset", b'"1234"')
        )
    )
    assert (text.origin.partition, text.origin.offset, text.reason) == (12, 1234, "unknown")


def test_spring_key_exception_and_plain_records():
    key_failure = conventions.parse(
        encoded(
            ("kafka_dlt-original-topic", b"orders"),
            ("kafka_dlt-key-exception-fqcn", b"org.apache.kafka.common.errors.SerializationException"),
            ("kafka_dlt-key-exception-message", b"bad key"),
        )
    )
    assert key_failure.reason == "key-exception" and key_failure.error_message == "bad key"
    assert key_failure.error_class == "org.apache.kafka.common.errors.SerializationException"
    assert key_failure.origin.partition is None
    plain = conventions.parse(encoded(("tenant", b"acme"), ("x-retry-count", b"2")))
    assert plain.format == "plain" and plain.reason == "unknown" and plain.origin.topic == ""
