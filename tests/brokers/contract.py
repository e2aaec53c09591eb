"""The contract every broker adapter must pass, written once (subclassed per broker).

A subclass provides the hooks: how to reach the broker, how to produce *genuine* dead letters
on fresh, uniquely named resources, and how to read what a redrive delivered to the original
destination. Every test here runs against the real broker.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import pytest

from brokers import get_adapter, headers
from brokers.base import BrokerError, ConnectionConfig, HarvestedMessage, RedriveMessage, SourceSpec


@dataclass
class Sent:
    payload: bytes
    key: bytes | None = None
    headers: dict = field(default_factory=dict)


@dataclass
class Received:
    payload: bytes
    key: bytes | None
    headers: list  # [(name, python value)] as the broker client gave them


class ListSink:
    """A sink that keeps batches in memory; ``fail_after_store`` simulates a crash after commit."""

    def __init__(self, fail_after_store: bool = False):
        self.batches: list[list[HarvestedMessage]] = []
        self.fail_after_store = fail_after_store

    async def __call__(self, batch: list[HarvestedMessage]) -> None:
        self.batches.append(list(batch))
        if self.fail_after_store:
            raise RuntimeError("simulated crash between DB commit and broker ack")

    @property
    def messages(self) -> list[HarvestedMessage]:
        return [m for b in self.batches for m in b]


def run(coro):
    return asyncio.run(coro)


def redrive_messages(harvested: list[HarvestedMessage]) -> list[RedriveMessage]:
    return [
        RedriveMessage(
            ref=i,
            redrive_id=str(uuid.uuid4()),
            payload=m.payload,
            headers=m.headers,
            properties=m.properties,
            key=m.key,
            origin=m.origin,
            retry_count=m.retry_count,
        )
        for i, m in enumerate(harvested)
    ]


class AdapterContract:
    kind: str
    #: the largest payload the broker under test accepts by default (override with the reason)
    large_payload_size = 5 * 1024 * 1024
    #: headers the broker delivers as text only (NATS): non-UTF-8 header values are not sent
    binary_header_values = True

    # ---- hooks -------------------------------------------------------------------------------
    def config(self) -> ConnectionConfig:
        raise NotImplementedError

    def unreachable_config(self) -> ConnectionConfig:
        raise NotImplementedError

    async def dead_letter(self, sent: list[Sent]) -> SourceSpec:
        """Dead-letter each message for real on fresh resources; return the DLQ's source spec."""
        raise NotImplementedError

    async def read_redriven(self, source: SourceSpec, count: int, timeout: float = 10.0) -> list[Received]:
        """Read up to ``count`` messages that arrived at the original destination (wait at most
        ``timeout``; return early once ``count`` arrived, and after that wait briefly for extras
        so "exactly once" can be asserted)."""
        raise NotImplementedError

    # ---- helpers -----------------------------------------------------------------------------
    async def harvest_all(self, source: SourceSpec, sink=None, **kw):
        sink = sink or ListSink()
        async with get_adapter(self.config()) as adapter:
            result = await adapter.harvest(source, sink, **kw)
        return sink, result

    # ---- the contract ------------------------------------------------------------------------
    def test_health_reports_server_version_and_latency(self):
        async def go():
            async with get_adapter(self.config()) as adapter:
                return await adapter.health()

        health = run(go())
        assert health.ok, health.error
        assert health.server_version
        assert health.latency_ms is not None and health.latency_ms >= 0

    def test_unreachable_broker_is_a_transient_broker_error(self):
        async def go():
            async with get_adapter(self.unreachable_config()) as adapter:
                health = await adapter.health()
                assert not health.ok and health.error
                source = SourceSpec(name="x", mode=adapter.modes[0], address="nowhere")
                with pytest.raises(BrokerError) as err:
                    await adapter.harvest(source, ListSink())
                assert err.value.permanent is False

        run(go())

    def test_harvest_keeps_payload_headers_and_origin(self):
        sent = [
            Sent(b'{"id": 1}', b"k-1", {"tenant": "acme"}),
            Sent(b'{"id": 2}', b"k-2", {"tenant": "globex"}),
        ]
        source = run(self.dead_letter(sent))
        sink, result = run(self.harvest_all(source))
        got = sorted(sink.messages, key=lambda m: m.payload)
        assert [m.payload for m in got] == [s.payload for s in sent]
        assert result.received == 2
        for message, s in zip(got, sent, strict=True):
            assert headers.get_text(message.headers, "tenant") == s.headers["tenant"]
            assert message.position
            assert message.origin.queue or message.origin.topic or message.origin.subject
            assert message.failed_at is not None
        assert len({m.position for m in got}) == 2

    def test_harvest_again_finds_nothing_new(self):
        source = run(self.dead_letter([Sent(b"once")]))
        first, _ = run(self.harvest_all(source))
        second, result = run(self.harvest_all(source))
        assert [m.payload for m in first.messages] == [b"once"]
        assert second.messages == [] and result.received == 0

    def test_sink_failure_acks_nothing_and_redelivers_same_positions(self):
        source = run(self.dead_letter([Sent(b"crash-1"), Sent(b"crash-2")]))
        crashing = ListSink(fail_after_store=True)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(self.harvest_all(source, crashing))
        assert crashing.messages, "the sink saw the batch before failing"
        again, _ = run(self.harvest_all(source))
        assert {m.position for m in again.messages} >= {m.position for m in crashing.messages}
        assert sorted(m.payload for m in again.messages) == [b"crash-1", b"crash-2"]

    def test_limit_and_batch_size_are_respected(self):
        source = run(self.dead_letter([Sent(f"m{i}".encode()) for i in range(5)]))
        sink, result = run(self.harvest_all(source, limit=3, batch_size=2))
        assert len(sink.messages) == 3 and result.received == 3
        assert all(len(b) <= 2 for b in sink.batches)
        rest, _ = run(self.harvest_all(source))
        assert len(rest.messages) == 2
        assert {m.payload for m in sink.messages + rest.messages} == {f"m{i}".encode() for i in range(5)}

    def test_redrive_arrives_byte_identical_with_retry_headers_exactly_once(self):
        sent = [Sent(b'{"order": 42}', b"order-42", {"tenant": "acme"})]
        source = run(self.dead_letter(sent))
        sink, _ = run(self.harvest_all(source))
        (harvested,) = sink.messages
        (msg,) = redrive_messages([harvested])

        async def go():
            async with get_adapter(self.config()) as adapter:
                return await adapter.redrive([msg])

        (outcome,) = run(go())
        assert outcome.ok, outcome.error
        assert outcome.destination
        arrived = run(self.read_redriven(source, 1, timeout=10))
        assert len(arrived) == 1, arrived
        (received,) = arrived
        assert received.payload == sent[0].payload
        if harvested.key is not None:
            assert received.key == sent[0].key
        names = {n.lower(): v for n, v in received.headers}
        assert str(names["x-retry-count"]) in ("1", "b'1'") or names["x-retry-count"] in (1, b"1")
        assert names["x-dlq-redrive-id"] in (msg.redrive_id, msg.redrive_id.encode())
        assert "x-dlq-redriven-at" in names
        assert any(n.startswith("x-original-") for n in names)
        assert names.get("tenant") in ("acme", b"acme")

    def test_non_utf8_payload_and_header_values_round_trip(self):
        payload = b"\xff\xfe\x00binary\x80"
        hdrs = {"plain": "caf\u00e9"}
        if self.binary_header_values:
            hdrs["raw"] = b"\xc3\x28\xff"
        source = run(self.dead_letter([Sent(payload, b"\x00\xff", hdrs)]))
        sink, _ = run(self.harvest_all(source))
        (m,) = sink.messages
        assert m.payload == payload
        assert headers.get(m.headers, "plain") in ("caf\u00e9", "caf\u00e9".encode())
        if self.binary_header_values:
            assert bytes(headers.get(m.headers, "raw")) == b"\xc3\x28\xff"
        (msg,) = redrive_messages([m])

        async def go():
            async with get_adapter(self.config()) as adapter:
                return await adapter.redrive([msg])

        (outcome,) = run(go())
        assert outcome.ok, outcome.error
        (received,) = run(self.read_redriven(source, 1))
        assert received.payload == payload
        values = dict(received.headers)
        if self.binary_header_values:
            assert bytes(values["raw"]) == b"\xc3\x28\xff"

    def test_large_payload_round_trips(self):
        payload = (b"0123456789abcdef" * (self.large_payload_size // 16 + 1))[: self.large_payload_size]
        source = run(self.dead_letter([Sent(payload)]))
        sink, _ = run(self.harvest_all(source))
        (m,) = sink.messages
        assert len(m.payload) == len(payload) and m.payload == payload

    def test_discover_lists_the_dead_letter_location(self):
        source = run(self.dead_letter([Sent(b"discover-me")]))

        async def go():
            async with get_adapter(self.config()) as adapter:
                return await adapter.discover()

        found = run(go())
        match = [d for d in found if d.address == source.address and d.mode == source.mode]
        assert match, [d.address for d in found][:20]
        assert match[0].reason
