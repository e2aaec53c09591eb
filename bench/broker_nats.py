"""NATS JetStream side of a run: an application-level DLQ stream (the worker that failed a
message republished it with ``x-original-*`` headers, nestjs-jetstream style), and the raw
nats-py ceiling: a durable pull consumer acking every message, and pipelined publishes, each
confirmed by a PubAck."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import nats
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import NotFoundError

from . import data
from .aio import BackgroundLoop
from .config import BenchConfig

BATCH = 200


class NatsBench:
    kind = "nats"
    label = "NATS JetStream"

    def __init__(self, config: BenchConfig, loop: BackgroundLoop, tag: str = "nats"):
        self.config, self.loop = config, loop
        run = config.run_id
        self.stream, self.dlq_stream = f"BENCH_{run}_{tag.upper()}_ORDERS", f"BENCH_{run}_{tag.upper()}_DLQ"
        self.subject = f"{config.prefix()}.{tag}.orders.created"
        self.dlq_subject = f"{config.prefix()}.{tag}.dlq.orders.created"
        self.nc = None
        self.js = None
        self.sent = 0

    def connection_kwargs(self) -> dict:
        return {"kind": "nats", "url": self.config.nats_url}

    def source_kwargs(self) -> dict:
        return {"mode": "dlq_stream", "address": self.dlq_stream}

    async def _connect(self):
        if self.nc is None or self.nc.is_closed:
            self.nc = await nats.connect(self.config.nats_url, connect_timeout=5, max_reconnect_attempts=2)
            self.js = self.nc.jetstream(timeout=10)
        return self.js

    def setup(self) -> None:
        async def setup():
            js = await self._connect()
            prefix = self.subject.rsplit(".", 2)[0]
            await js.add_stream(StreamConfig(name=self.stream, subjects=[f"{prefix}.orders.>"]))
            await js.add_stream(StreamConfig(name=self.dlq_stream, subjects=[f"{prefix}.dlq.>"]))

        self.loop.run(setup())

    def cleanup(self) -> None:
        async def cleanup():
            js = await self._connect()
            for name in (self.stream, self.dlq_stream):
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(name)
            await self.nc.close()

        self.loop.run(cleanup(), timeout=30)

    def destination_count(self) -> int:
        async def count():
            return (await (await self._connect()).stream_info(self.stream)).state.messages

        return self.loop.run(count())

    def purge_destination(self) -> None:
        async def purge():
            await (await self._connect()).purge_stream(self.stream)

        self.loop.run(purge())

    # ---- genuine dead letters ------------------------------------------------------------------
    def _dlq_headers(self, n: int) -> dict[str, str]:
        error_class, message = data.failure(n)
        return {
            "tenant": data.tenant(n),
            "x-request-id": f"req-{n:08d}",
            "x-original-subject": self.subject,
            "x-original-stream": self.stream,
            "x-original-seq": str(n + 1),
            "x-original-consumer": "orders-worker",
            "x-exception-fqcn": error_class,
            "x-exception-message": message,
            "x-failed-at": datetime.now(UTC).isoformat(),
        }

    async def _publish(self, subject: str, numbers: range, headers) -> None:
        js = await self._connect()
        futures = [await js.publish_async(subject, data.payload(n), headers=headers(n)) for n in numbers]
        acks = await asyncio.gather(*futures)
        if len(acks) != len(numbers):
            raise RuntimeError("NATS publish: missing PubAcks")

    def make_dead_letters(self, count: int) -> None:
        self.loop.run(self._publish(self.dlq_subject, range(self.sent, self.sent + count), self._dlq_headers))
        self.sent += count

    def dead_letter_one(self) -> float:
        at = time.monotonic()
        self.make_dead_letters(1)  # the worker's DLQ publish, confirmed by its PubAck
        return at

    # ---- raw ceiling ----------------------------------------------------------------------------
    async def _drain(self, count: int) -> float:
        js = await self._connect()
        durable = "bench-raw"
        await js.add_consumer(
            self.dlq_stream, ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=60)
        )
        sub = await js.pull_subscribe_bind(durable, stream=self.dlq_stream)
        received = 0
        start = time.perf_counter()
        while received < count:
            with contextlib.suppress(nats.errors.TimeoutError):
                for message in await sub.fetch(min(BATCH, count - received), timeout=2):
                    await message.ack()
                    received += 1
        await self.nc.flush()
        elapsed = time.perf_counter() - start
        await sub.unsubscribe()
        await js.delete_consumer(self.dlq_stream, durable)
        return elapsed

    def raw_drain(self, count: int) -> float:
        """Seconds to pull ``count`` dead letters with a durable consumer, acking each one."""
        return self.loop.run(self._drain(count))

    def raw_publish(self, count: int) -> float:
        """Seconds to publish ``count`` messages to the original subject, each confirmed by a PubAck."""

        async def publish() -> float:
            await self._connect()
            start = time.perf_counter()
            await self._publish(self.subject, range(count), lambda n: {"tenant": data.tenant(n)})
            return time.perf_counter() - start

        return self.loop.run(publish())
