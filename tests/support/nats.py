"""Genuine NATS JetStream dead letters and broker-side checks: streams, a worker consumer that
fails messages for real (MAX_DELIVERIES and TERMINATED advisories), the advisory capture stream,
raw header blocks nats-py cannot send, what a stream stores, and adapter calls.

Shared by the NATS adapter tests (``tests/brokers/nats/``), the fault tests and the API end-to-end
test. Streams are uniquely named; callers delete them (:func:`delete_streams`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
import uuid
from urllib.parse import urlsplit

import nats  # noqa: TID251 - tests produce genuine dead letters with the client itself
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig  # noqa: TID251
from nats.js.errors import NotFoundError  # noqa: TID251

from brokers import get_adapter
from brokers.base import ConnectionConfig, SourceSpec
from brokers.nats.admin import capture_stream_name
from tests.brokers.contract import ListSink

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


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


async def work_stream(url: str, created: list) -> tuple[str, str]:
    """A fresh work stream (no capture yet); returns (stream, subject prefix)."""
    u = uid()
    stream, subject = f"T_NWORK_{u}", f"t.nwork.{u}"
    async with connected(url) as (_, js):
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{subject}.>"]))
    created.append((url, stream))
    return stream, subject


async def fail_both_ways(url: str, stream: str, subject: str, *, term: bytes = b"+TERM") -> dict[str, int]:
    """Consumer ``retrier`` exceeds max_deliver (1) on ``<subject>.retry`` and consumer
    ``validator`` +TERMs ``<subject>.invalid``: one MAX_DELIVERIES and one MSG_TERMINATED
    advisory (``+TERM <reason>`` needs a 2.10.4+ server: the shared 2.9.10 ignores it). Returns
    {consumer: stream sequence of the message it failed}."""
    async with connected(url) as (nc, js):
        retry = await js.publish(f"{subject}.retry", b'{"order": 1}', headers={"tenant": "acme"})
        invalid = await js.publish(f"{subject}.invalid", b'{"order": 2}', headers={"tenant": "acme"})
        for name, tail in (("retrier", "retry"), ("validator", "invalid")):
            await js.add_consumer(
                stream,
                ConsumerConfig(
                    durable_name=name,
                    ack_policy=AckPolicy.EXPLICIT,
                    max_deliver=1,
                    ack_wait=30,
                    filter_subject=f"{subject}.{tail}",
                ),
            )
        await fail(nc, js, stream, "retrier", 1)
        await fail(nc, js, stream, "validator", 1, verb=term)
    return {"retrier": retry.seq, "validator": invalid.seq}


async def wait_for_advisories(
    url: str, capture: str, stream: str, kinds: tuple[str, ...], timeout=10.0
) -> None:
    """Until ``capture`` holds an advisory of each of ``kinds`` (MAX_DELIVERIES, MSG_TERMINATED)
    about ``stream``: advisories are sent asynchronously."""
    deadline = time.monotonic() + timeout
    async with connected(url) as (_, js):
        while True:
            info = await js.stream_info(capture, subjects_filter=f"$JS.EVENT.ADVISORY.CONSUMER.*.{stream}.*")
            seen = {subject.split(".")[4] for subject in info.state.subjects or {}}
            if set(kinds) <= seen:
                return
            assert time.monotonic() < deadline, f"{capture} holds advisories {seen}, expected {kinds}"
            await asyncio.sleep(0.05)


def advisory_subjects(stream: str) -> list[str]:
    """The subjects a stream must capture to keep ``stream``'s dead-letter advisories."""
    return [f"$JS.EVENT.ADVISORY.CONSUMER.{kind}.{stream}.*" for kind in ("MAX_DELIVERIES", "MSG_TERMINATED")]


async def users_capture(url: str, created: list, subjects: list[str]) -> str:
    """A stream of the user's (not dlqadmin's) on ``subjects``; returns its name."""
    name = f"T_MINE_{uid()}"
    async with connected(url) as (_, js):
        await js.add_stream(StreamConfig(name=name, subjects=subjects))
    created.append((url, name))
    return name


async def stream_exists(url: str, name: str) -> bool:
    async with connected(url) as (_, js):
        try:
            await js.stream_info(name)
        except NotFoundError:
            return False
    return True
