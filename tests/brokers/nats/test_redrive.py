"""NATS redrive: a fresh Nats-Msg-Id (the duplicate window), stripped NATS headers, permanent
outcomes, and a concurrent publish window that keeps order."""

from __future__ import annotations

import time

from nats.js.api import StreamConfig  # noqa: TID251

from brokers import get_adapter, headers
from brokers.base import Destination, Origin, RedriveMessage
from brokers.nats.admin import capture_stream_name
from tests.brokers.contract import redrive_messages, run
from tests.support.nats import (
    NATS_URL,
    add_worker,
    advisory_source,
    config,
    connected,
    fail,
    harvest,
    parse_block,
    redrive,
    stored_after,
    uid,
    wait_for_messages,
)


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
    assert (unknown.ok, unknown.permanent) == (False, True) and "needs a destination" in unknown.error


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
