"""The Kafka adapter against a real Kafka-protocol broker (KAFKA_BOOTSTRAP, tansu here).

Dead letters are written in the genuine formats (Spring Kafka DeadLetterPublishingRecoverer,
Kafka Connect, a plain DLQ) with the client library itself, on fresh topics per test.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest

# The tests produce and consume genuine records with the client itself, to check the adapter
# from outside; application code never imports it (brokers/ only).
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition  # noqa: TID251
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: TID251

from brokers import get_adapter, headers
from brokers.base import BrokerError, ConnectionConfig, Destination, HeaderPolicy, SourceSpec, TLSOptions
from brokers.kafka import conventions
from brokers.kafka.client import ErrorLog, client_config
from tests.brokers.contract import AdapterContract, ListSink, Received, Sent, redrive_messages, run
from tests.conftest import unique

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
#: the dead-letter topics allow records this large (topic max.message.bytes, portable to Kafka)
TOPIC_MAX_BYTES = 8 * 1024 * 1024
ORIGINAL_TS = 1_700_000_000_123
#: above 2**32, so an 8-byte offset that was read as 4 bytes would show
ORIGINAL_OFFSET = 2**33 + 100
WRAPPER = "org.springframework.kafka.listener.ListenerExecutionFailedException"
CAUSE = "java.lang.IllegalStateException"
STACK = "java.lang.IllegalStateException: boom\n\tat com.acme.Orders.handle(Orders.java:42)\n"
CONNECT = {
    "partition": "3",
    "offset": "18",
    "connector.name": "jdbc-sink",
    "task.id": "0",
    "stage": "VALUE_CONVERTER",
    "class.name": "org.apache.kafka.connect.json.JsonConverter",
    "exception.class.name": "org.apache.kafka.connect.errors.DataException",
    "exception.message": "Converting byte[] to Kafka Connect data failed due to serialization error",
    "exception.stacktrace": "org.apache.kafka.connect.errors.DataException: ...\n",
}


# --------------------------------------------------------------------------------------------
# Helpers: topics, genuine dead letters, reading what arrived


@cache
def admin() -> AdminClient:
    return AdminClient({"bootstrap.servers": BOOTSTRAP, "allow.auto.create.topics": False})


@cache
def producer() -> Producer:
    return Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "acks": "all",
            "enable.idempotence": True,
            "message.max.bytes": TOPIC_MAX_BYTES,
            "allow.auto.create.topics": False,
        }
    )


def create_topics(*names: str, partitions: int = 1) -> None:
    config = {"max.message.bytes": str(TOPIC_MAX_BYTES)}
    futures = admin().create_topics([NewTopic(n, partitions, 1, config=config) for n in names])
    for future in futures.values():
        future.result(10)


def topic_exists(name: str) -> bool:
    tm = admin().list_topics(topic=name, timeout=5).topics.get(name)
    return tm is not None and tm.error is None


@dataclass
class Record:
    value: bytes | None
    key: bytes | None = None
    headers: list | None = None
    partition: int = 0


def produce(topic: str, records: list[Record]) -> None:
    failed: list = []
    for r in records:
        producer().produce(
            topic,
            value=r.value,
            key=r.key,
            headers=r.headers or [],
            partition=r.partition,
            on_delivery=lambda err, _msg: err and failed.append(err),
        )
    assert producer().flush(15) == 0 and not failed, failed


def spring_headers(source_topic: str, partition: int, offset: int) -> list:
    """What Spring Kafka's DeadLetterPublishingRecoverer appends after the original headers."""
    return [
        ("kafka_dlt-original-topic", source_topic.encode()),
        ("kafka_dlt-original-partition", struct.pack(">i", partition)),
        ("kafka_dlt-original-offset", struct.pack(">q", offset)),
        ("kafka_dlt-original-timestamp", struct.pack(">q", ORIGINAL_TS)),
        ("kafka_dlt-original-timestamp-type", b"CreateTime"),
        ("kafka_dlt-original-consumer-group", b"orders-svc"),
        ("kafka_dlt-exception-fqcn", WRAPPER.encode()),
        ("kafka_dlt-exception-cause-fqcn", CAUSE.encode()),
        ("kafka_dlt-exception-message", b"Listener method failed; nested exception is boom"),
        ("kafka_dlt-exception-stacktrace", STACK.encode()),
    ]


def wire(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def fresh_source(topic: str) -> SourceSpec:
    return SourceSpec(name=topic, mode="topic", address=topic, options={"group_id": unique("grp")})


@dataclass
class Arrived:
    value: bytes | None
    key: bytes | None
    headers: list
    partition: int


def read_topic(topic: str, count: int, timeout: float = 10.0, extra: float = 1.0) -> list[Arrived]:
    """Everything on ``topic`` from the beginning: up to ``count`` records within ``timeout``,
    then ``extra`` seconds more so a duplicate would show. Redrive outcomes are acks=all
    confirmations, so once every partition is at EOF and ``extra`` seconds stayed quiet,
    nothing more is coming and the reader stops early even below ``count``."""
    partitions = admin().list_topics(topic=topic, timeout=5).topics[topic].partitions
    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": unique("reader"),
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    got: list[Arrived] = []
    at_eof: set[int] = set()
    deadline = time.monotonic() + timeout
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            for m in consumer.consume(100, 0.2):
                if m.error() is None:
                    got.append(Arrived(m.value(), m.key(), m.headers() or [], m.partition()))
                    at_eof.discard(m.partition())
                    quiet_until = None
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(m.partition())
            if len(got) >= count:
                deadline = min(deadline, time.monotonic() + extra)
            if at_eof >= set(partitions):
                quiet_until = quiet_until or time.monotonic() + extra
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    return got


def murmur2(data: bytes) -> int:
    """Apache Kafka's ``Utils.murmur2`` (signed 32-bit), as the Java producer hashes keys."""
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[length - length % 4 :]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def config(**options) -> ConnectionConfig:
    return ConnectionConfig(kind="kafka", url=BOOTSTRAP, timeout=5.0, options=options)


async def harvest(source: SourceSpec, adapter=None, **kw) -> ListSink:
    sink = ListSink()
    if adapter is not None:
        await adapter.harvest(source, sink, **kw)
        return sink
    async with get_adapter(config()) as fresh:
        await fresh.harvest(source, sink, **kw)
    return sink


async def redrive(messages, **kw):
    async with get_adapter(config()) as adapter:
        return await adapter.redrive(messages, **kw)


# --------------------------------------------------------------------------------------------
# The shared contract


class TestKafkaContract(AdapterContract):
    kind = "kafka"
    # 5 MB (the contract default) works: the dead-letter topics are created with
    # max.message.bytes=8 MiB (tansu accepts even 20 MB; Apache Kafka honours the topic setting)
    # and the test producer raises librdkafka's message.max.bytes to match.

    def config(self) -> ConnectionConfig:
        return config()

    def unreachable_config(self) -> ConnectionConfig:
        return ConnectionConfig(kind="kafka", url="127.0.0.1:1", timeout=3)

    async def dead_letter(self, sent: list[Sent], partitions: int = 1) -> SourceSpec:
        """Spring Kafka style: ``<topic>-dlt`` on the original partition, original headers first,
        then the ``kafka_dlt-*`` context. The original topic is left empty (the record never got
        through), so whatever arrives there later was redriven."""
        source_topic = unique("kafka")
        dlt = f"{source_topic}-dlt"
        await asyncio.to_thread(create_topics, source_topic, dlt, partitions=partitions)
        records = []
        for i, s in enumerate(sent):
            partition = i % partitions
            original = [(name, wire(value)) for name, value in s.headers.items()]
            hdrs = original + spring_headers(source_topic, partition, ORIGINAL_OFFSET + i)
            records.append(Record(s.payload, s.key, hdrs, partition))
        await asyncio.to_thread(produce, dlt, records)
        return SourceSpec(name=dlt, mode="topic", address=dlt, options={"group_id": unique("grp")})

    async def read_redriven(self, source: SourceSpec, count: int, timeout: float = 10.0) -> list[Received]:
        arrived = await asyncio.to_thread(read_topic, source.address.removesuffix("-dlt"), count, timeout)
        return [Received(a.value, a.key, a.headers) for a in arrived]

    # ---- Kafka specifics ---------------------------------------------------------------------

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

    def test_rewind_rereads_the_same_positions(self):
        before = int(time.time() * 1000) - 1000
        source = run(self.dead_letter([Sent(f"r{i}".encode()) for i in range(3)]))

        async def go():
            async with get_adapter(config()) as adapter:
                backlog_before = await adapter.backlog(source)
                first = await harvest(source, adapter)
                backlog_after = await adapter.backlog(source)
                empty = await harvest(source, adapter)
                await adapter.rewind(source, offset=1)
                from_one = await harvest(source, adapter)
                await adapter.rewind(source, timestamp_ms=before)
                by_time = await harvest(source, adapter)
                return backlog_before, first, backlog_after, empty, from_one, by_time

        backlog_before, first, backlog_after, empty, from_one, by_time = run(go())
        positions = sorted(m.position for m in first.messages)
        assert len(positions) == 3
        # tansu under-reports the high watermark (last batch base offset + 1): a lower bound
        assert backlog_before >= 1 and backlog_after == 0
        assert empty.messages == []
        assert sorted(m.position for m in from_one.messages) == positions[1:]
        assert sorted(m.position for m in by_time.messages) == positions
        assert source.cursor["offsets"] == {"0": 3}

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

    def test_unknown_topic_is_permanent_and_not_created(self):
        missing = unique("kafka") + "-dlt"
        with pytest.raises(BrokerError) as err:
            run(harvest(fresh_source(missing)))
        assert err.value.permanent and "does not exist" in str(err.value)
        assert not topic_exists(missing)

    def test_unreachable_broker_fails_within_the_timeout(self):
        async def go():
            async with get_adapter(ConnectionConfig(kind="kafka", url="127.0.0.1:1", timeout=2)) as adapter:
                started = time.monotonic()
                with pytest.raises(BrokerError) as err:
                    await adapter.harvest(fresh_source("anything"), ListSink())
                return err.value, time.monotonic() - started

        error, elapsed = run(go())
        assert error.permanent is False and elapsed < 5, (error, elapsed)

    def test_discover_finds_topics_by_their_dead_letter_headers(self):
        prefix = unique("disc")
        named, by_headers, ordinary = f"{prefix}.orders.dlq", f"{prefix}.orders.failed", f"{prefix}.orders"
        create_topics(named, by_headers, ordinary)
        context = [(f"__connect.errors.{k}", v.encode()) for k, v in CONNECT.items()]
        produce(by_headers, [Record(b"bad", b"k", context)])
        produce(ordinary, [Record(b"fine", b"k", [("tenant", b"acme")])])

        async def go():
            async with get_adapter(config(discover_include="^" + prefix.replace(".", r"\."))) as adapter:
                return await adapter.discover()

        found = {d.address: d for d in run(go())}
        assert set(found) == {named, by_headers}
        assert "dead-letter" in found[named].reason
        assert "__connect.errors" in found[by_headers].reason
        assert found[by_headers].messages == 1 and found[by_headers].mode == "topic"


# --------------------------------------------------------------------------------------------
# Pure checks (no broker)


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


def self_signed() -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dlqadmin-test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def test_credentials_and_tls_pems_become_librdkafka_settings():
    cert_pem, key_pem = self_signed()
    cfg = ConnectionConfig(
        kind="kafka",
        url="kafka://broker-1:9093, broker-2:9093/",
        username="svc",
        password="secret",
        tls=TLSOptions(
            enabled=True, verify=False, ca_pem=cert_pem, client_cert_pem=cert_pem, client_key_pem=key_pem
        ),
        options={
            "sasl_mechanism": "SCRAM-SHA-512",
            "client": {"fetch.wait.max.ms": 100, "enable.auto.commit": True},
        },
    )
    conf = client_config(cfg, ErrorLog(), **{"group.id": "g", "enable.auto.commit": False})
    assert conf["bootstrap.servers"] == "broker-1:9093,broker-2:9093"
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("svc", "secret")
    assert conf["ssl.ca.pem"] == cert_pem and conf["ssl.key.pem"] == key_pem
    assert conf["enable.ssl.certificate.verification"] is False
    assert conf["fetch.wait.max.ms"] == 100  # operator extras apply ...
    assert conf["enable.auto.commit"] is False  # ... but never over what correctness needs
    # librdkafka validates every setting and parses the PEMs when the client is created
    Consumer(conf).close()
    plain = client_config(ConnectionConfig(kind="kafka", url=BOOTSTRAP), ErrorLog())
    assert plain["security.protocol"] == "PLAINTEXT" and "sasl.username" not in plain
