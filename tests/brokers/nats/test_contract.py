"""The shared adapter contract (``tests/brokers/contract.py``) against NATS, twice: dead letters
captured from JetStream advisories, and an application-level DLQ stream."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from nats.js.api import StreamConfig  # noqa: TID251

from brokers.base import ConnectionConfig, SourceSpec
from brokers.nats.admin import capture_stream_name
from tests.brokers.contract import AdapterContract, Received, Sent, run
from tests.support.nats import (
    NATS_URL,
    add_worker,
    advisory_source,
    config,
    connected,
    delete_streams,
    fail,
    parse_block,
    stored_after,
    uid,
    wait_for_messages,
)


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
