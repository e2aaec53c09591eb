"""NATS dlq_stream mode (an application's own DLQ stream: peek, consume, delete) and subject
mode (core publishes captured live)."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.api import RetentionPolicy, StreamConfig  # noqa: TID251

from brokers import get_adapter
from brokers.base import Capability, SourceSpec
from brokers.nats import NatsAdapter
from tests.brokers.contract import run
from tests.support.nats import NATS_URL, config, connected, harvest, uid


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
