"""NATS discovery: capture streams, DLQ-named streams, and every work stream with its consumers'
max_deliver (limited ones first); key-value buckets are not work streams."""

from __future__ import annotations

from nats.js.api import StreamConfig  # noqa: TID251

from brokers import get_adapter
from brokers.nats.admin import capture_stream_name
from tests.brokers.contract import run
from tests.support.nats import NATS_URL, add_worker, advisory_source, config, connected, uid


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
            idle = f"T_NIDLE_{u}"
            await js.add_stream(StreamConfig(name=idle, subjects=[f"t.nidle.{u}"]))
            streams.append((NATS_URL, idle))
            await js.create_key_value(bucket=f"t_nkv_{u}")
            streams.append((NATS_URL, f"KV_t_nkv_{u}"))
        async with get_adapter(config()) as adapter:
            return captured, plain, dlq, idle, u, await adapter.discover()

    captured, plain, dlq, idle, u, found = run(go())
    by_key = {(d.mode, d.address): d for d in found}
    capture = capture_stream_name(captured)
    assert by_key[("advisory", captured.address)].options["capture_stream"] == capture
    assert by_key[("advisory", plain)].reason.startswith("consumer billing has max_deliver 4; enable capture")
    assert by_key[("advisory", plain)].options == {"needs_prepare": True}
    assert [(c.name, c.max_deliver) for c in by_key[("advisory", plain)].consumers] == [("billing", 4)]
    assert by_key[("advisory", idle)].options == {"needs_prepare": True}
    assert by_key[("advisory", idle)].consumers == []
    order = [d.address for d in found]
    assert order.index(plain) < order.index(idle)  # streams with a max_deliver come first
    assert not any(d.address == f"KV_t_nkv_{u}" for d in found)
    assert ("dlq_stream", dlq) in by_key
    assert ("dlq_stream", capture) not in by_key  # our own capture stream is not a DLQ
