"""NATS adapter: the shared contract (advisory and app-level DLQ-stream modes) plus NATS-specific
behaviour, against real servers: the shared system server at NATS_URL (2.9.10 here) and a
private nats-server 2.15.x (``nats_server.py``) for term reasons and payloads above 1 MiB.

Every test creates uniquely named streams and deletes them afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import nats  # noqa: TID251 - tests produce genuine dead letters with the client itself
import pytest
from nats.js.api import (  # noqa: TID251
    AckPolicy,
    ConsumerConfig,
    RetentionPolicy,
    StreamConfig,
)
from nats.js.errors import NotFoundError  # noqa: TID251

from brokers import get_adapter, headers
from brokers.base import (
    BrokerError,
    Capability,
    ConnectionConfig,
    Destination,
    Origin,
    RedriveMessage,
    SourceSpec,
    TLSOptions,
)
from brokers.nats import NatsAdapter, wire
from brokers.nats.admin import capture_stream_name
from brokers.nats.connection import RAW_HEADERS_SUPPORTED
from brokers.nats.harvest import PAYLOAD_GONE
from tests.brokers import nats_server
from tests.brokers.contract import AdapterContract, ListSink, Received, Sent, redrive_messages, run

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture(scope="session")
def private_nats():
    """A nats-server 2.15.x on a free port with max_payload 8 MB, stopped at the end."""
    server = nats_server.start()
    yield server
    server.stop()


def uid() -> str:
    return uuid.uuid4().hex[:10]


def config(url: str = NATS_URL, **options) -> ConnectionConfig:
    return ConnectionConfig(kind="nats", url=url, timeout=5, options=options)


@contextlib.asynccontextmanager
async def connected(url: str):
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=1)
    try:
        yield nc, nc.jetstream(timeout=5)
    finally:
        await nc.close()


async def delete_streams(created: list[tuple[str, str]]) -> None:
    by_url: dict[str, list[str]] = {}
    for url, name in created:
        by_url.setdefault(url, []).append(name)
    for url, names in by_url.items():
        async with connected(url) as (_, js):
            for name in names:
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(name)


@pytest.fixture
def streams():
    """Collects (url, stream) pairs to delete after the test."""
    created: list[tuple[str, str]] = []
    yield created
    run(delete_streams(created))


async def wait_for_messages(js, stream: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (messages := (await js.stream_info(stream)).state.messages) < count:
        assert time.monotonic() < deadline, f"{stream} holds {messages} messages, expected {count}"
        await asyncio.sleep(0.05)


async def fail(nc, js, stream: str, consumer: str, count: int, *, verb: bytes = b"-NAK") -> list:
    """Deliver ``count`` messages to ``consumer`` and fail each with ``verb`` (``-NAK``,
    ``+TERM`` or ``+TERM <reason>``); returns the delivered messages."""
    psub = await js.pull_subscribe_bind(consumer, stream=stream)
    got: list = []
    deadline = time.monotonic() + 10
    while len(got) < count and time.monotonic() < deadline:
        with contextlib.suppress(nats.errors.TimeoutError):
            got += await psub.fetch(count - len(got), timeout=2)
    assert len(got) == count
    for msg in got:
        await nc.request(msg.reply, verb, timeout=5)  # answered by the server: processed
    # max_deliver fires when a redelivery is due; before 2.11 a pull consumer also needs a
    # waiting pull request for that.
    with contextlib.suppress(nats.errors.TimeoutError):
        await psub.fetch(1, timeout=0.5)
    await psub.unsubscribe()
    return got


async def advisory_source(url: str, created: list, *, retention=RetentionPolicy.LIMITS, **stream_kw):
    """A fresh work stream, its capture stream (prepared BEFORE any failure), and a source."""
    u = uid()
    stream, subject = f"T_NADV_{u}", f"t.nadv.{u}"
    async with connected(url) as (_, js):
        await js.add_stream(
            StreamConfig(name=stream, subjects=[f"{subject}.>"], retention=retention, **stream_kw)
        )
    created.append((url, stream))
    source = SourceSpec(name=stream, mode="advisory", address=stream)
    async with get_adapter(config(url)) as adapter:
        await adapter.prepare(source)
    created.append((url, capture_stream_name(source)))
    return source, subject


async def add_worker(js, stream: str, max_deliver: int = 1, name: str = "worker") -> None:
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name=name, ack_policy=AckPolicy.EXPLICIT, max_deliver=max_deliver, ack_wait=30
        ),
    )


def parse_block(block: bytes) -> list[tuple[str, str]]:
    """Test-side header parsing, independent of the adapter's."""
    out = []
    for line in block.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            out.append((name.decode(), value.strip().decode("utf-8", "replace")))
    return out


async def stored_after(url: str, stream: str, after_seq: int) -> list[dict]:
    """Every message stored in ``stream`` after ``after_seq``, via STREAM.MSG.GET (raw headers)."""
    out = []
    async with connected(url) as (nc, _):
        seq = after_seq + 1
        while True:
            reply = await nc.request(
                f"$JS.API.STREAM.MSG.GET.{stream}", json.dumps({"seq": seq, "next_by_subj": ">"}).encode(), 5
            )
            answer = json.loads(reply.data)
            if "message" not in answer:
                return out
            msg = answer["message"]
            msg["raw"] = base64.b64decode(msg["hdrs"]) if msg.get("hdrs") else b""
            msg["payload"] = base64.b64decode(msg["data"]) if msg.get("data") else b""
            out.append(msg)
            seq = msg["seq"] + 1


def raw_hpub(url: str, subject: str, block: bytes, payload: bytes) -> None:
    """Publish a hand-made header block (repeated names, raw bytes: what nats-py cannot send)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"INFO")
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n')
        sock.sendall(b"HPUB %s %d %d\r\n" % (subject.encode(), len(block), len(block) + len(payload)))
        sock.sendall(block + payload + b"\r\nPING\r\n")
        assert reader.readline() == b"PONG\r\n"


async def harvest(url: str, source: SourceSpec, **kw):
    sink = ListSink()
    async with get_adapter(config(url)) as adapter:
        result = await adapter.harvest(source, sink, **kw)
    return sink.messages, result


async def redrive(messages, destination=None, url: str = NATS_URL):
    async with get_adapter(config(url)) as adapter:
        return await adapter.redrive(messages, destination=destination)


# --------------------------------------------------------------------------------------------
# The contract, twice


class NatsContract(AdapterContract):
    kind = "nats"
    #: NATS headers are text: nats-py sends str values only
    binary_header_values = False
    url = NATS_URL

    @pytest.fixture(autouse=True)
    def _cleanup(self):
        self.created: list[tuple[str, str]] = []
        yield
        run(delete_streams(self.created))

    def config(self) -> ConnectionConfig:
        return config(self.url)

    def unreachable_config(self) -> ConnectionConfig:
        return ConnectionConfig(kind="nats", url="nats://127.0.0.1:1", timeout=2)

    async def read_redriven(self, source: SourceSpec, count: int, timeout: float = 10.0) -> list[Received]:
        # A redrive returns ok only after the PubAck, so copies are already stored when this
        # runs: once something arrived and nothing more came for a second, the answer is final.
        deadline, last_change, found = time.monotonic() + timeout, time.monotonic(), []
        while time.monotonic() < deadline:
            now = await stored_after(self.url, self.work_stream, self.after_seq)
            if len(now) != len(found):
                found, last_change = now, time.monotonic()
            if found and time.monotonic() - last_change > (0.3 if len(found) >= count else 1.0):
                break
            await asyncio.sleep(0.1)
        return [Received(m["payload"], None, parse_block(m["raw"])) for m in found]

    def test_large_payload_round_trips(self, private_nats):
        # The shared 2.9.10 server keeps the default 1 MiB max_payload; the private 2.15 server
        # is configured with 8 MB, so the contract's 5 MB payload runs there.
        self.url = private_nats.url
        super().test_large_payload_round_trips()


class TestNatsAdvisoryContract(NatsContract):
    async def dead_letter(self, sent: list[Sent]) -> SourceSpec:
        source, subject = await advisory_source(self.url, self.created, allow_direct=True)
        async with connected(self.url) as (nc, js):
            await add_worker(js, source.address, max_deliver=1)
            for s in sent:
                hdr = {k: str(v) for k, v in s.headers.items()} or None
                ack = await js.publish(f"{subject}.created", s.payload, headers=hdr)
            await fail(nc, js, source.address, "worker", len(sent))
            await wait_for_messages(js, capture_stream_name(source), len(sent))
        self.work_stream, self.after_seq = source.address, ack.seq
        return source


class TestNatsDlqStreamContract(NatsContract):
    async def dead_letter(self, sent: list[Sent]) -> SourceSpec:
        """An application-level DLQ: the worker republishes the failure, then terms it."""
        u = uid()
        work, dlq = f"T_NWORK_{u}", f"T_NDLQ_{u}"
        async with connected(self.url) as (_, js):
            await js.add_stream(StreamConfig(name=work, subjects=[f"t.nwork.{u}.>"], allow_direct=True))
            self.created.append((self.url, work))
            await js.add_stream(StreamConfig(name=dlq, subjects=[f"t.ndlq.{u}.>"]))
            self.created.append((self.url, dlq))
            await add_worker(js, work, max_deliver=3)
            for s in sent:
                hdr = {k: str(v) for k, v in s.headers.items()} or None
                ack = await js.publish(f"t.nwork.{u}.created", s.payload, headers=hdr)
            psub = await js.pull_subscribe_bind("worker", stream=work)
            got: list = []
            while len(got) < len(sent):
                got += await psub.fetch(len(sent) - len(got), timeout=5)
            for msg in got:
                meta = msg.metadata
                dead = dict(msg.headers or {})
                dead |= {
                    "x-original-subject": msg.subject,
                    "x-original-stream": work,
                    "x-original-seq": str(meta.sequence.stream),
                    "x-dead-letter-reason": "handler failed: boom",
                    "x-failed-at": datetime.now(UTC).isoformat(),
                    "x-delivery-count": str(meta.num_delivered),
                }
                await js.publish(f"t.ndlq.{u}.orders", msg.data, headers=dead)
                await msg.term()
        self.work_stream, self.after_seq = work, ack.seq
        return SourceSpec(name=dlq, mode="dlq_stream", address=dlq)

    def test_app_dlq_headers_become_origin_and_error(self):
        source = run(self.dead_letter([Sent(b"x", None, {"tenant": "acme"})]))
        sink, _ = run(self.harvest_all(source))
        (m,) = sink.messages
        assert m.origin.subject.startswith("t.nwork.") and m.origin.stream == self.work_stream
        assert m.origin.seq == self.after_seq and m.origin.extra["deliveries"] == 1
        assert m.error_message == "handler failed: boom" and m.reason == "dead_letter"
        assert m.position == f"{source.address}:1"
        assert abs((datetime.now(UTC) - m.failed_at).total_seconds()) < 60


# --------------------------------------------------------------------------------------------
# Advisory mode specifics


def test_terminated_with_reason_keeps_the_reason_text(private_nats, streams):
    url = private_nats.url  # the reason field needs 2.10.4+; the system server ignores "+TERM <r>"

    async def go():
        source, subject = await advisory_source(url, streams, allow_direct=True)
        async with connected(url) as (nc, js):
            await add_worker(js, source.address, max_deliver=5)
            ack = await js.publish(f"{subject}.created", b'{"id": 7}', headers={"tenant": "acme"})
            await fail(nc, js, source.address, "worker", 1, verb="+TERM invalid payload: café".encode())
            await wait_for_messages(js, capture_stream_name(source), 1)
        return ack, await harvest(url, source)

    ack, ((m,), result) = run(go())
    assert result.received == 1 and result.exhausted and result.backlog == 0
    assert m.reason == "terminated" and m.error_message == "invalid payload: café"
    assert m.payload == b'{"id": 7}' and m.payload_available
    assert m.origin.seq == ack.seq and m.origin.subject.endswith(".created")
    assert m.origin.extra["advisory_type"] == "io.nats.jetstream.advisory.v1.terminated"
    assert m.origin.extra["consumer"] == "worker" and m.origin.extra["consumer_seq"] == 1
    assert m.origin.extra["deliveries"] == 1 and m.origin.extra["advisory_id"]
    assert m.position == f"{ack.stream}:{ack.seq}:worker"
    assert headers.get_text(m.headers, "tenant") == "acme"


@pytest.mark.parametrize("removal", ["workqueue_term", "max_msgs"])
def test_original_removed_by_retention_is_stored_without_payload(removal, streams):
    async def go():
        if removal == "workqueue_term":  # WorkQueue: a term removes the message (like an ack)
            source, subject = await advisory_source(NATS_URL, streams, retention=RetentionPolicy.WORK_QUEUE)
        else:  # Limits with max_msgs=1: the next publish evicts the dead letter
            source, subject = await advisory_source(NATS_URL, streams, max_msgs=1)
        async with connected(NATS_URL) as (nc, js):
            await add_worker(js, source.address, max_deliver=1)
            ack = await js.publish(f"{subject}.created", b"gone soon")
            await fail(
                nc, js, source.address, "worker", 1, verb=b"+TERM" if removal == "workqueue_term" else b"-NAK"
            )
            await wait_for_messages(js, capture_stream_name(source), 1)
            if removal == "max_msgs":
                await js.publish(f"{subject}.created", b"evicts the first")
            with pytest.raises(NotFoundError):
                await js.get_msg(source.address, ack.seq)
        first = await harvest(NATS_URL, source)
        again = await harvest(NATS_URL, source)
        return ack, first, again

    ack, ((m,), result), (later, _) = run(go())
    (refused,) = run(redrive(redrive_messages([m]), Destination(subject="t.anywhere")))
    assert not refused.ok and refused.permanent and refused.error.startswith("nothing to redrive")
    assert result.received == 1 and later == []
    assert m.payload == b"" and m.payload_available is False
    assert m.error_message == PAYLOAD_GONE
    assert m.reason == ("terminated" if removal == "workqueue_term" else "max_deliveries")
    assert m.origin.stream == ack.stream and m.origin.seq == ack.seq and m.failed_at is not None


@pytest.mark.parametrize("allow_direct", [True, False], ids=["direct_get", "msg_get"])
def test_header_values_survive_byte_exact(allow_direct, streams):
    """café and emoji (mangled by nats-py's email.parser path), repeated names, raw bytes."""
    block = (
        b"NATS/1.0\r\nplain: caf\xc3\xa9\r\nemoji: \xf0\x9f\x98\x80 party\r\n"
        b"X-Dup: one\r\nX-Dup: two\r\nX-Bin: \xff\xfe\r\nNats-Msg-Id: raw-1\r\n\r\n"
    )

    async def go():
        source, subject = await advisory_source(NATS_URL, streams, allow_direct=allow_direct)
        async with connected(NATS_URL) as (nc, js):
            await add_worker(js, source.address, max_deliver=1)
            raw_hpub(NATS_URL, f"{subject}.raw", block, b"payload")
            await wait_for_messages(js, source.address, 1)
            await fail(nc, js, source.address, "worker", 1)
            await wait_for_messages(js, capture_stream_name(source), 1)
        stored = await stored_after(NATS_URL, source.address, 0)
        return stored, await harvest(NATS_URL, source)

    (stored,), ((m,), _) = run(go())
    assert RAW_HEADERS_SUPPORTED
    assert m.properties["fetched_via"] == ("direct" if allow_direct else "msg_get")
    assert base64.b64decode(m.properties["raw_headers_b64"]) == block == stored["raw"]
    assert headers.decode_pairs(m.headers) == [
        ("plain", "café"),
        ("emoji", "\U0001f600 party"),
        ("X-Dup", "one"),
        ("X-Dup", "two"),
        ("X-Bin", b"\xff\xfe"),
        ("Nats-Msg-Id", "raw-1"),
    ]
    assert m.properties["nats_msg_id"] == "raw-1"
    assert m.payload == b"payload" and m.origin.subject.endswith(".raw")


def test_harvest_is_bounded_by_limit_and_reports_backlog(streams):
    async def go():
        source, subject = await advisory_source(NATS_URL, streams)
        async with connected(NATS_URL) as (nc, js):
            await add_worker(js, source.address, max_deliver=1)
            for i in range(3):
                await js.publish(f"{subject}.created", f"b{i}".encode())
            await fail(nc, js, source.address, "worker", 3)
            await wait_for_messages(js, capture_stream_name(source), 3)
        async with get_adapter(config()) as adapter:
            before = await adapter.backlog(source)
            _, result = await harvest(NATS_URL, source, limit=1)
            return before, result, await adapter.backlog(source)

    before, result, after = run(go())
    assert before == 3 and result.received == 1 and not result.exhausted
    assert result.backlog == 2 and after == 2


def test_prepare_is_idempotent_and_needs_the_watched_stream(streams):
    async def go():
        source, _ = await advisory_source(NATS_URL, streams)
        async with get_adapter(config()) as adapter:
            await adapter.prepare(source)  # second time: nothing to do
            missing = SourceSpec(name="m", mode="advisory", address=f"T_NOPE_{uid()}")
            with pytest.raises(BrokerError) as err:
                await adapter.prepare(missing)
        async with connected(NATS_URL) as (_, js):
            info = await js.stream_info(capture_stream_name(source))
        return source, info, err.value

    source, info, err = run(go())
    assert sorted(info.config.subjects) == [
        f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{source.address}.*",
        f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{source.address}.*",
    ]
    assert info.config.retention == RetentionPolicy.LIMITS and info.config.max_age == 30 * 86400
    assert err.permanent and "does not exist" in str(err)


def test_harvest_without_capture_stream_is_a_permanent_error(streams):
    async def go():
        async with get_adapter(config()) as adapter:
            source = SourceSpec(name="x", mode="advisory", address=f"T_NOCAP_{uid()}")
            with pytest.raises(BrokerError) as err:
                await adapter.harvest(source, ListSink())
            return err.value

    err = run(go())
    assert err.permanent and "prepare" in str(err)


# --------------------------------------------------------------------------------------------
# Redrive


def test_redrive_sets_a_fresh_msg_id_and_strips_nats_headers(streams):
    async def go():
        source, subject = await advisory_source(NATS_URL, streams, duplicate_window=120)
        async with connected(NATS_URL) as (nc, js):
            await add_worker(js, source.address, max_deliver=1)
            original = await js.publish(
                f"{subject}.created", b"order", headers={"Nats-Msg-Id": "order-42", "tenant": "acme"}
            )
            await fail(nc, js, source.address, "worker", 1)
            await wait_for_messages(js, capture_stream_name(source), 1)
            # Why: re-publishing with the original id inside the duplicate window is swallowed.
            swallowed = await js.publish(f"{subject}.created", b"order", headers={"Nats-Msg-Id": "order-42"})
        (m,), _ = await harvest(NATS_URL, source)
        (msg,) = redrive_messages([m])
        async with get_adapter(config()) as adapter:
            first = await adapter.redrive([msg])
            retried = await adapter.redrive([msg])  # e.g. a worker retrying after a lost answer
        return original, swallowed, m, msg, first, retried, await stored_after(NATS_URL, source.address, 1)

    original, swallowed, m, msg, (first,), (retried,), stored = run(go())
    assert swallowed.duplicate and headers.get_text(m.headers, "Nats-Msg-Id") == "order-42"
    assert first.ok and not first.error and first.destination == m.origin.subject
    assert first.position == f"{original.stream}:{original.seq + 1}"
    assert (
        retried.ok and retried.error == "duplicate (already redriven)" and retried.position == first.position
    )
    (copy,) = stored
    names = dict(parse_block(copy["raw"]))
    assert names["Nats-Msg-Id"] == f"redrive:{msg.redrive_id}"
    assert [n for n in names if n.lower().startswith("nats-")] == ["Nats-Msg-Id"]
    assert names["tenant"] == "acme" and names["x-retry-count"] == "1"
    assert names["x-original-stream"] == original.stream and names["x-original-seq"] == str(original.seq)
    assert copy["payload"] == b"order"


def test_redrive_without_a_capturing_stream_is_permanent():
    u = uid()
    messages = [
        RedriveMessage(ref="a", redrive_id=u, payload=b"x", origin=Origin(subject=f"t.nostream.{u}")),
        RedriveMessage(ref="b", redrive_id=u + "b", payload=b"x"),
    ]

    async def go():
        async with get_adapter(config()) as adapter:
            return await adapter.redrive(messages)

    nowhere, unknown = run(go())
    assert (nowhere.ref, nowhere.ok, nowhere.permanent) == ("a", False, True)
    assert nowhere.error == f"no stream captures subject t.nostream.{u}"
    assert (unknown.ok, unknown.permanent) == (False, True) and "no destination subject" in unknown.error


def test_a_stream_error_answer_is_a_prompt_permanent_outcome(streams):
    """(nats-py 2.16's publish_async never completes its future on such an answer.)"""
    u = uid()
    stream = f"T_NSMALL_{u}"

    async def go():
        async with connected(NATS_URL) as (_, js):
            await js.add_stream(StreamConfig(name=stream, subjects=[f"t.nsmall.{u}"], max_msg_size=1024))
        streams.append((NATS_URL, stream))
        messages = [
            RedriveMessage(ref=1, redrive_id=u, payload=b"x" * 2000, origin=Origin(subject=f"t.nsmall.{u}")),
            RedriveMessage(
                ref=2, redrive_id=u + "b", payload=b"fits", origin=Origin(subject=f"t.nsmall.{u}")
            ),
        ]
        started = time.monotonic()
        outcomes = await redrive(messages)
        return outcomes, time.monotonic() - started

    (too_big, fits), elapsed = run(go())
    assert not too_big.ok and too_big.permanent and "err_code 10054" in too_big.error
    assert fits.ok and elapsed < 3


def test_redrive_publishes_a_window_concurrently_and_keeps_order(streams):
    u = uid()
    stream = f"T_NREDRIVE_{u}"

    async def go():
        async with connected(NATS_URL) as (_, js):
            await js.add_stream(StreamConfig(name=stream, subjects=[f"t.nredrive.{u}.>"]))
        streams.append((NATS_URL, stream))
        messages = [
            RedriveMessage(ref=i, redrive_id=f"{u}-{i}", payload=f"m{i}".encode(), headers=[])
            for i in range(300)
        ]
        async with get_adapter(config(redrive_window=64)) as adapter:
            started = time.monotonic()
            outcomes = await adapter.redrive(messages, destination=Destination(subject=f"t.nredrive.{u}.x"))
            return outcomes, time.monotonic() - started

    outcomes, elapsed = run(go())
    assert [o.ref for o in outcomes] == list(range(300)) and all(o.ok for o in outcomes)
    assert len({o.position for o in outcomes}) == 300 and elapsed < 10


# --------------------------------------------------------------------------------------------
# dlq_stream and subject modes


async def app_dlq(url: str, created: list, retention, count: int) -> SourceSpec:
    u = uid()
    stream = f"T_NAPPDLQ_{u}"
    async with connected(url) as (_, js):
        await js.add_stream(StreamConfig(name=stream, subjects=[f"t.nappdlq.{u}.>"], retention=retention))
        created.append((url, stream))
        for i in range(count):
            await js.publish(
                f"t.nappdlq.{u}.x",
                f"d{i}".encode(),
                headers={"x-original-subject": "orders.created", "x-dead-letter-reason": "boom"},
            )
    return SourceSpec(name=stream, mode="dlq_stream", address=stream)


def test_workqueue_dlq_stream_is_peeked_without_removal_then_consumed(streams):
    async def go():
        source = await app_dlq(NATS_URL, streams, RetentionPolicy.WORK_QUEUE, 3)
        source.remove_after_harvest = False
        peeked, result = await harvest(NATS_URL, source, batch_size=2)
        cursor = dict(source.cursor)
        again, _ = await harvest(NATS_URL, source)
        async with connected(NATS_URL) as (_, js):
            kept = (await js.stream_info(source.address)).state.messages
            source.remove_after_harvest = True
            taken, _ = await harvest(NATS_URL, source)
            left = (await js.stream_info(source.address)).state.messages
        return source, peeked, result, cursor, again, kept, taken, left

    source, peeked, result, cursor, again, kept, taken, left = run(go())
    assert [m.payload for m in peeked] == [b"d0", b"d1", b"d2"] and result.batches == 2
    assert cursor == {"next_seq": 4} and again == [] and kept == 3
    assert [m.position for m in taken] == [m.position for m in peeked]  # same rows, deduplicated
    assert left == 0
    assert peeked[0].origin.subject == "orders.created" and peeked[0].error_message == "boom"


@pytest.mark.parametrize("delete", [False, True])
def test_limits_dlq_stream_deletes_only_when_asked(delete, streams):
    async def go():
        source = await app_dlq(NATS_URL, streams, RetentionPolicy.LIMITS, 2)
        source.options["delete_after_harvest"] = delete
        got, _ = await harvest(NATS_URL, source)
        async with connected(NATS_URL) as (_, js):
            return got, (await js.stream_info(source.address)).state.messages

    got, left = run(go())
    assert len(got) == 2 and left == (0 if delete else 2)


def test_subject_mode_captures_core_publishes_during_the_window():
    u = uid()
    source = SourceSpec(
        name="live", mode="subject", address=f"t.nlive.{u}.>", options={"listen_seconds": 1.5}
    )

    async def go():
        task = asyncio.ensure_future(harvest(NATS_URL, source))
        async with connected(NATS_URL) as (nc, _):
            while not task.done():
                await nc.publish(
                    f"t.nlive.{u}.orders",
                    b"live",
                    headers={"x-original-subject": "orders.created", "x-dead-letter-reason": "boom"},
                )
                await asyncio.sleep(0.1)
        return await task

    got, result = run(go())
    assert got and result.received == len(got) and result.exhausted
    assert {m.payload for m in got} == {b"live"} and len({m.position for m in got}) == len(got)
    assert got[0].origin.subject == "orders.created" and got[0].error_message == "boom"
    assert got[0].position.startswith(f"{source.address}:")
    assert NatsAdapter.mode_capabilities("subject") & Capability.LIVE_ONLY
    assert not NatsAdapter.mode_capabilities("advisory") & Capability.LIVE_ONLY


def test_a_failing_sink_error_propagates_unchanged_in_subject_mode():
    u = uid()
    source = SourceSpec(name="live", mode="subject", address=f"t.nlive.{u}", options={"listen_seconds": 0.5})

    async def sink(batch):
        raise OSError("database went away")

    async def go():
        async with get_adapter(config()) as adapter:
            task = asyncio.ensure_future(adapter.harvest(source, sink))
            async with connected(NATS_URL) as (nc, _):
                while not task.done():
                    await nc.publish(source.address, b"x")
                    await asyncio.sleep(0.05)
            return await task

    with pytest.raises(OSError, match="database went away"):
        run(go())


# --------------------------------------------------------------------------------------------
# Discovery, connection


def test_discover_finds_capture_dlq_named_and_max_deliver_streams(streams):
    async def go():
        captured, _ = await advisory_source(NATS_URL, streams)
        u = uid()
        plain, dlq = f"T_NPLAIN_{u}", f"T_NDISC_DLQ_{u}"
        async with connected(NATS_URL) as (_, js):
            await js.add_stream(StreamConfig(name=plain, subjects=[f"t.nplain.{u}"]))
            streams.append((NATS_URL, plain))
            await add_worker(js, plain, max_deliver=4, name="billing")
            await js.add_stream(StreamConfig(name=dlq, subjects=[f"t.ndiscdlq.{u}"]))
            streams.append((NATS_URL, dlq))
        async with get_adapter(config()) as adapter:
            return captured, plain, dlq, await adapter.discover()

    captured, plain, dlq, found = run(go())
    by_key = {(d.mode, d.address): d for d in found}
    capture = capture_stream_name(captured)
    assert by_key[("advisory", captured.address)].options["capture_stream"] == capture
    assert by_key[("advisory", plain)].reason.startswith("consumer billing has max_deliver 4; enable capture")
    assert by_key[("advisory", plain)].options == {"needs_prepare": True}
    assert ("dlq_stream", dlq) in by_key
    assert ("dlq_stream", capture) not in by_key  # our own capture stream is not a DLQ


def test_unreachable_servers_fail_fast_and_a_later_url_is_tried():
    async def go():
        started = time.monotonic()
        async with get_adapter(config("nats://127.0.0.1:1, nats://127.0.0.1:2")) as adapter:
            with pytest.raises(BrokerError) as err:
                await adapter.discover()
        elapsed = time.monotonic() - started
        async with get_adapter(config(f"nats://127.0.0.1:1,{NATS_URL}")) as adapter:
            health = await adapter.health()
        return err.value, elapsed, health

    err, elapsed, health = run(go())
    assert not err.permanent and "cannot connect" in str(err) and elapsed < 5
    assert health.ok and health.server_version


def _pki(directory) -> dict[str, str]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def pem_key(key) -> str:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def build(subject: str, key, issuer_key, issuer: x509.Name, extensions) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
        )
        for ext, critical in extensions:
            builder = builder.add_extension(ext, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build(
        "dlqadmin test CA",
        ca_key,
        ca_key,
        name("dlqadmin test CA"),
        [
            (x509.BasicConstraints(ca=True, path_length=None), True),
        ],
    )
    out = {"ca": ca.public_bytes(serialization.Encoding.PEM).decode()}
    for who, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build(
            who,
            key,
            ca_key,
            ca.subject,
            [
                (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
                (x509.ExtendedKeyUsage([usage]), False),
            ],
        )
        out[who] = cert.public_bytes(serialization.Encoding.PEM).decode()
        out[f"{who}_key"] = pem_key(key)
    for label, text in out.items():
        (directory / f"{label}.pem").write_text(text)
    return out


@pytest.fixture(scope="module")
def tls_nats(tmp_path_factory):
    """A private server requiring TLS with client certificates, and a user/password."""
    directory = tmp_path_factory.mktemp("nats-tls")
    pki = _pki(directory)
    server = nats_server.start(
        f"""tls {{
  cert_file: "{directory / "server.pem"}"
  key_file: "{directory / "server_key.pem"}"
  ca_file: "{directory / "ca.pem"}"
  verify: true
}}
authorization {{ user: "dlq", password: "s3cret" }}
"""
    )
    yield server, pki
    server.stop()


def test_tls_with_client_certificate_and_password(tls_nats):
    server, pki = tls_nats
    tls = TLSOptions(
        enabled=True, ca_pem=pki["ca"], client_cert_pem=pki["client"], client_key_pem=pki["client_key"]
    )

    def cfg(password: str = "s3cret", tls: TLSOptions = tls) -> ConnectionConfig:
        return ConnectionConfig(
            kind="nats", url=server.url, username="dlq", password=password, tls=tls, timeout=3
        )

    async def go():
        async with get_adapter(cfg()) as adapter:
            health = await adapter.health()
            found = await adapter.discover()
        errors = []
        for bad in (cfg(password="wrong"), cfg(tls=TLSOptions(enabled=True))):
            async with get_adapter(bad) as adapter:
                with pytest.raises(BrokerError) as err:
                    await adapter.discover()
                errors.append(err.value)
        return health, found, errors

    health, found, (bad_password, untrusted) = run(go())
    assert health.ok and health.server_version.startswith("2.") and found == []
    assert bad_password.permanent and "cannot connect" in str(bad_password)
    assert untrusted.permanent and "certificate" in str(untrusted).lower()


def test_the_package_imports_the_nats_client_not_itself():
    code = "import brokers.nats as ours, nats; from nats.aio.client import Client; print(nats.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "site-packages" in out.stdout and "brokers" not in out.stdout


# --------------------------------------------------------------------------------------------
# Wire helpers (pure functions)


def test_direct_get_block_is_split_back_into_the_stored_block():
    own = b"NATS/1.0\r\nNats-Subject: user-set\r\na: 1\r\n\r\n"
    appended = own[:-2] + (
        b"Nats-Stream: S\r\nNats-Subject: s.x\r\nNats-Sequence: 5\r\n"
        b"Nats-Time-Stamp: 2026-01-01T00:00:00.1Z\r\n\r\n"
    )
    assert wire.split_direct_get(appended) == (
        own,
        {
            "nats-stream": "S",
            "nats-subject": "s.x",
            "nats-sequence": "5",
            "nats-time-stamp": "2026-01-01T00:00:00.1Z",
        },
    )
    bare = b"NATS/1.0\r\nNats-Stream: S\r\nNats-Sequence: 1\r\n\r\n"
    assert wire.split_direct_get(bare)[0] is None
    assert wire.status_of(b"NATS/1.0 404 No Messages\r\n\r\n") == ("404", "No Messages")


def test_times_parse_from_nanosecond_rfc3339_and_epoch():
    assert wire.parse_time("2026-11-26T17:54:19.778117986Z") == datetime(
        2026, 11, 26, 17, 54, 19, 778117, UTC
    )
    assert wire.parse_time("1764179659000") == datetime.fromtimestamp(1764179659, UTC)
    assert wire.parse_time("not a time") is None
