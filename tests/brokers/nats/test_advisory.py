"""NATS advisory mode: dead letters found through MAX_DELIVERIES / TERMINATED advisories, their
reasons and byte-exact headers, originals already removed by retention, limits and backlog, and
preparing the capture stream."""

from __future__ import annotations

import base64

import pytest
from nats.js.api import RetentionPolicy  # noqa: TID251
from nats.js.errors import NotFoundError  # noqa: TID251

from brokers import get_adapter, headers
from brokers.base import BrokerError, Destination, NotPrepared, SourceSpec
from brokers.nats.admin import capture_stream_name
from brokers.nats.advisory import PAYLOAD_GONE
from brokers.nats.connection import RAW_HEADERS_SUPPORTED
from tests.brokers.contract import ListSink, redrive_messages, run
from tests.support.nats import (
    NATS_URL,
    add_worker,
    advisory_source,
    config,
    connected,
    fail,
    harvest,
    raw_hpub,
    redrive,
    stored_after,
    uid,
    wait_for_messages,
)


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


def test_harvest_without_capture_stream_says_the_source_is_not_prepared(streams):
    async def go():
        async with get_adapter(config()) as adapter:
            source = SourceSpec(name="x", mode="advisory", address=f"T_NOCAP_{uid()}")
            with pytest.raises(BrokerError) as err:
                await adapter.harvest(source, ListSink())
            return err.value

    err = run(go())
    assert isinstance(err, NotPrepared) and err.permanent and "needs preparing" in str(err)
