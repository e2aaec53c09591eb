"""RabbitMQ side of a run: genuine ``rejected`` dead letters (publish, then nack without requeue
through a DLX), and the raw aio-pika ceiling: a prefetch consumer acking each batch, and
publishing with publisher confirms pipelined in windows."""

from __future__ import annotations

import asyncio
import time

import aio_pika
from aio_pika import DeliveryMode, ExchangeType, Message

from . import data
from .aio import BackgroundLoop
from .config import BenchConfig

BATCH = 200  # the harvest's default batch size (DLQADMIN_HARVEST_BATCH_SIZE)
WINDOW = 256  # publishes in flight, as the adapter's default publish window


class RabbitBench:
    kind = "rabbitmq"
    label = "RabbitMQ"

    def __init__(self, config: BenchConfig, loop: BackgroundLoop, tag: str = "rmq"):
        self.config, self.loop = config, loop
        base = f"{config.prefix()}.{tag}"
        self.exchange, self.work_queue = f"{base}.orders", f"{base}.orders.q"
        self.dlx, self.dlq = f"{base}.dlx", f"{base}.orders.dlq"
        self.routing_key = "order.created"
        self.conn: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self.sent = 0

    # ---- dlqadmin side ----------------------------------------------------------------------
    def connection_kwargs(self) -> dict:
        return {"kind": "rabbitmq", "url": self.config.amqp_url, "username": "guest", "password": "guest"}

    def source_kwargs(self) -> dict:
        return {"mode": "queue", "address": self.dlq}

    # ---- topology ---------------------------------------------------------------------------
    async def _connect(self) -> aio_pika.abc.AbstractConnection:
        if self.conn is None or self.conn.is_closed:
            self.conn = await aio_pika.connect(self.config.amqp_url, login="guest", password="guest")
        return self.conn

    async def _setup(self) -> None:
        ch = await (await self._connect()).channel()
        dlx = await ch.declare_exchange(self.dlx, ExchangeType.FANOUT, durable=True)
        dlq = await ch.declare_queue(self.dlq, durable=True)
        await dlq.bind(dlx)
        ex = await ch.declare_exchange(self.exchange, ExchangeType.DIRECT, durable=True)
        work = await ch.declare_queue(
            self.work_queue, durable=True, arguments={"x-dead-letter-exchange": self.dlx}
        )
        await work.bind(ex, routing_key=self.routing_key)
        await ch.close()

    def setup(self) -> None:
        self.loop.run(self._setup())

    async def _cleanup(self) -> None:
        ch = await (await self._connect()).channel()
        for queue in (self.work_queue, self.dlq):
            await ch.queue_delete(queue)
        for exchange in (self.exchange, self.dlx):
            await ch.exchange_delete(exchange)
        await self.conn.close()

    def cleanup(self) -> None:
        self.loop.run(self._cleanup(), timeout=30)

    async def depth(self, queue: str) -> int:
        ch = await (await self._connect()).channel()
        try:
            return (await ch.declare_queue(queue, passive=True)).declaration_result.message_count
        finally:
            await ch.close()

    def destination_count(self) -> int:
        return self.loop.run(self.depth(self.work_queue))

    def purge_destination(self) -> None:
        async def purge():
            ch = await (await self._connect()).channel()
            await (await ch.declare_queue(self.work_queue, passive=True)).purge()
            await ch.close()

        self.loop.run(purge())

    # ---- genuine dead letters ------------------------------------------------------------------
    def _message(self, n: int) -> Message:
        return Message(
            data.payload(n),
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=f"m-{self.config.run_id}-{n}",
            content_type="application/json",
            headers={"tenant": data.tenant(n), "x-request-id": f"req-{n:08d}"},
        )

    async def _publish(self, exchange, routing_key: str, numbers: range) -> None:
        slots = asyncio.Semaphore(WINDOW)

        async def one(n: int) -> None:
            async with slots:
                await exchange.publish(self._message(n), routing_key=routing_key, mandatory=True)

        await asyncio.gather(*(one(n) for n in numbers))

    async def _dead_letter(self, count: int) -> None:
        conn = await self._connect()
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.get_exchange(self.exchange)
        before = await self.depth(self.dlq)
        await self._publish(ex, self.routing_key, range(self.sent, self.sent + count))
        self.sent += count
        # The consumer that fails them: nack without requeue, one frame per batch -> "rejected".
        consumer = await conn.channel()
        await consumer.set_qos(prefetch_count=500)
        work = await consumer.get_queue(self.work_queue)
        taken = 0
        async with work.iterator() as it:
            async for message in it:
                taken += 1
                if taken % 250 == 0 or taken == count:
                    await message.nack(multiple=True, requeue=False)
                if taken == count:
                    break
        await consumer.close()
        await ch.close()
        deadline = time.monotonic() + 60
        while await self.depth(self.dlq) < before + count:  # dead-lettering is asynchronous
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.dlq}: dead letters did not arrive")
            await asyncio.sleep(0.05)

    def make_dead_letters(self, count: int) -> None:
        self.loop.run(self._dead_letter(count))

    async def _dead_letter_one(self) -> float:
        """One genuine dead letter, for time-to-visibility: publish, take it, reject it; returns
        the monotonic time of the reject."""
        if self._channel is None or self._channel.is_closed:
            self._channel = await (await self._connect()).channel(publisher_confirms=True)
        ch = self._channel
        await (await ch.get_exchange(self.exchange)).publish(
            self._message(self.sent), routing_key=self.routing_key, mandatory=True
        )
        self.sent += 1
        work = await ch.get_queue(self.work_queue)
        message = None
        while message is None:
            message = await work.get(no_ack=False, fail=False)
        at = time.monotonic()
        await message.reject(requeue=False)
        return at

    def dead_letter_one(self) -> float:
        """Dead-letter one message; returns the monotonic time of the reject."""
        return self.loop.run(self._dead_letter_one())

    # ---- raw ceiling ----------------------------------------------------------------------------
    async def _drain(self, count: int) -> float:
        ch = await (await self._connect()).channel()
        await ch.set_qos(prefetch_count=BATCH)
        queue = await ch.get_queue(self.dlq)
        done = asyncio.get_running_loop().create_future()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            received += 1
            if received % BATCH == 0 or received == count:
                await message.ack(multiple=True)
            if received == count and not done.done():
                done.set_result(None)

        start = time.perf_counter()
        tag = await queue.consume(on_message, no_ack=False)
        await asyncio.wait_for(done, 600)
        elapsed = time.perf_counter() - start
        await queue.cancel(tag)
        await ch.close()
        return elapsed

    def raw_drain(self, count: int) -> float:
        """Seconds to consume ``count`` dead letters with prefetch and manual (batch) acks."""
        return self.loop.run(self._drain(count))

    async def _raw_publish(self, count: int) -> float:
        ch = await (await self._connect()).channel(publisher_confirms=True, on_return_raises=True)
        start = time.perf_counter()
        await self._publish(ch.default_exchange, self.work_queue, range(count))
        elapsed = time.perf_counter() - start
        await ch.close()
        return elapsed

    def raw_publish(self, count: int) -> float:
        """Seconds to publish ``count`` messages to the work queue, each confirmed by the broker."""
        return self.loop.run(self._raw_publish(count))
