"""Kafka redrive: destinations, byte-exact headers and null values, stripped diagnostics, the Java
client's partition for each key, retry counts, header policy, and permanent outcomes."""

from __future__ import annotations

import struct

from brokers import get_adapter, headers
from brokers.base import Destination, HeaderPolicy
from tests.brokers.contract import Sent, redrive_messages, run
from tests.brokers.kafka.harness import KafkaHarness
from tests.conftest import unique
from tests.support.kafka import (
    ORIGINAL_TS,
    Record,
    config,
    create_topics,
    fresh_source,
    harvest,
    java_partition,
    murmur2,
    produce,
    read_topic,
    redrive,
    spring_headers,
    topic_exists,
)


class TestKafkaRedrive(KafkaHarness):
    def test_plain_dead_letter_needs_a_destination_topic(self):
        dlq, target = unique("kafka") + ".dlq", unique("kafka")
        create_topics(dlq, target)
        produce(dlq, [Record(b"no context", None, [("tenant", b"acme")])])
        (m,) = run(harvest(fresh_source(dlq))).messages
        assert m.origin.topic == "" and m.origin.partition is None and m.origin.offset is None
        assert m.reason == "unknown" and m.origin.extra == {"format": "plain"}
        assert m.error_class == "" and m.failed_at is not None

        missing = unique("kafka")
        (msg,) = redrive_messages([m])

        async def go():
            async with get_adapter(config()) as adapter:
                nowhere = await adapter.redrive([msg])
                unknown = await adapter.redrive([msg], destination=Destination(topic=missing))
                chosen = await adapter.redrive([msg], destination=Destination(topic=target))
                return nowhere, unknown, chosen

        (nowhere,), (unknown,), (chosen,) = run(go())
        assert not nowhere.ok and nowhere.permanent and "destination" in nowhere.error
        assert not unknown.ok and unknown.permanent and "does not exist" in unknown.error
        assert not topic_exists(missing), "redrive must not auto-create a mistyped topic"
        assert chosen.ok, chosen.error
        assert chosen.destination == f"{target}@0" and chosen.position == f"{target}/0/0"
        (arrived,) = read_topic(target, 1)
        assert arrived.value == b"no context" and arrived.key is None
        names = [n for n, _ in arrived.headers]
        assert names[0] == "tenant" and "x-dlq-redrive-id" in names
        # no origin to record, only the dead letter's own timestamp
        assert [n for n in names if n.startswith("x-original-")] == ["x-original-timestamp"]

    def test_duplicate_and_null_headers_and_a_null_value_round_trip_in_order(self):
        source_topic = unique("kafka")
        dlt = f"{source_topic}-dlt"
        create_topics(source_topic, dlt)
        original = [("a", b"1"), ("empty", None), ("a", b"2"), ("raw", b"\xff\x00"), ("a", b"")]
        hdrs = original + spring_headers(source_topic, 0, 9)
        produce(dlt, [Record(None, b"tombstone-key", hdrs)])
        (m,) = run(harvest(fresh_source(dlt))).messages
        assert m.headers == headers.encode_pairs(hdrs)
        assert m.payload == b"" and m.properties["value_is_null"] is True
        (outcome,) = run(redrive(redrive_messages([m])))
        assert outcome.ok, outcome.error
        (arrived,) = read_topic(source_topic, 1)
        assert arrived.value is None and arrived.key == b"tombstone-key"
        assert arrived.headers[: len(original)] == original
        added = [n for n, _ in arrived.headers[len(original) :]]
        assert added[:3] == ["x-retry-count", "x-dlq-redrive-id", "x-dlq-redriven-at"]
        assert set(added[3:]) == {
            "x-original-topic",
            "x-original-partition",
            "x-original-offset",
            "x-original-timestamp",
        }

    def test_redrive_strips_diagnostics_and_keeps_the_java_partition_of_each_key(self):
        diagnostics = {"retry_topic-attempts": struct.pack(">i", 3), "__connect.errors.stage": "TASK_PUT"}
        sent = [
            Sent(f"v{i}".encode(), f"customer-{i}".encode(), {"tenant": "acme", **diagnostics})
            for i in range(6)
        ]
        sent += [Sent(b"keyless-1"), Sent(b"keyless-2")]  # origin partitions 0 and 1
        source = run(self.dead_letter(sent, partitions=3))
        harvested = run(harvest(source)).messages
        assert len(harvested) == len(sent)
        outcomes = run(redrive(redrive_messages(harvested)))
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        arrived = read_topic(source.address.removesuffix("-dlt"), len(sent))
        assert len(arrived) == len(sent)
        for a in arrived:
            names = [n for n, _ in a.headers]
            assert not any(n.startswith(("kafka_dlt-", "__connect.errors.", "retry_topic-")) for n in names)
            values = dict(a.headers)
            if a.key is not None:
                assert a.partition == java_partition(a.key, 3), a.key
                assert values["tenant"] == b"acme"
            else:
                assert str(a.partition).encode() == values["x-original-partition"]
            assert values["x-original-offset"].isdigit()  # decimal text, never Spring's binary
            assert values["x-original-timestamp"] == str(ORIGINAL_TS).encode()

    def test_existing_retry_count_is_incremented(self):
        source = run(self.dead_letter([Sent(b"again", b"k", {"x-retry-count": "2"})]))
        (m,) = run(harvest(source)).messages
        assert m.retry_count == 2
        (outcome,) = run(redrive(redrive_messages([m])))
        assert outcome.ok, outcome.error
        (arrived,) = run(self.read_redriven(source, 1))
        counts = [v for n, v in arrived.headers if n == "x-retry-count"]
        assert counts == [b"3"]

    def test_header_policy_extra_and_kept_diagnostics(self):
        source = run(self.dead_letter([Sent(b"policy", b"k", {"tenant": "acme"})]))
        (m,) = run(harvest(source)).messages
        policy = HeaderPolicy(keep_diagnostics=True, strip=["tenant"], extra={"x-dlq-reason": "manual"})
        (outcome,) = run(redrive(redrive_messages([m]), header_policy=policy))
        assert outcome.ok, outcome.error
        (arrived,) = run(self.read_redriven(source, 1))
        names = [n for n, _ in arrived.headers]
        assert "tenant" not in names and "kafka_dlt-original-topic" in names
        assert dict(arrived.headers)["x-dlq-reason"] == b"manual"

    def test_a_record_over_the_producer_limit_is_a_permanent_outcome(self):
        source = run(self.dead_letter([Sent(b"x" * 5000, b"k")]))
        (m,) = run(harvest(source)).messages

        async def go():
            async with get_adapter(config(message_max_bytes=2000)) as adapter:
                return await adapter.redrive(redrive_messages([m]))

        (outcome,) = run(go())
        assert not outcome.ok and outcome.permanent, outcome


def test_murmur2_matches_the_java_client():
    # Apache Kafka's UtilsTest.testMurmur2 vectors
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    assert {key: murmur2(key) for key in vectors} == vectors
