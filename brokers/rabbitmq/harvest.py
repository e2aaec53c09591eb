"""Reading a dead-letter queue on one channel: a consumer drain (destructive) or one basic.get
pass that requeues what it took (keeping the messages). The adapter opens and closes the channel;
closing it requeues anything delivered that these functions did not settle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aiormq.exceptions as amqp_exc
from aiormq.abc import DeliveredMessage
from pamqp import commands

from brokers.base import BrokerError, HarvestedMessage, HarvestResult, Sink
from brokers.pipeline import store_ahead

from .connection import AMQP_FAILURES, amqp_errors
from .messages import harvested

log = logging.getLogger(__name__)


async def ready_count(raw: Any, queue: str, *, timeout: float, vhost: str) -> int:
    """Ready messages in ``queue`` (passive declare). A missing queue is a permanent error.
    The broker closes the channel when the queue is missing: do not reuse it then."""
    try:
        with amqp_errors(f"inspect queue {queue!r}", timeout):
            declared = await raw.queue_declare(queue, passive=True, timeout=timeout)
    except BrokerError as exc:
        if isinstance(exc.__cause__, amqp_exc.ChannelNotFoundEntity):
            raise BrokerError(f"queue {queue!r} does not exist in vhost {vhost!r}", permanent=True) from exc
        raise
    return declared.message_count


class Settler:
    """Acks / nacks the deliveries of one channel: one ``multiple`` frame when a batch is exactly
    the next run of unsettled tags, else one frame per tag (so it never settles a stranger)."""

    def __init__(self, raw: Any):
        self.raw = raw
        self.next_tag = 1  # delivery tags start at 1 on every new channel

    async def settle(self, batch: list[DeliveredMessage], *, ack: bool) -> None:
        tags = sorted(m.delivery_tag for m in batch)
        if tags == list(range(self.next_tag, self.next_tag + len(tags))):
            await self._one(tags[-1], multiple=True, ack=ack)
            self.next_tag = tags[-1] + 1
            return
        for tag in tags:
            await self._one(tag, multiple=False, ack=ack)

    async def _one(self, tag: int, *, multiple: bool, ack: bool) -> None:
        if ack:
            await self.raw.basic_ack(tag, multiple=multiple)
        else:
            await self.raw.basic_nack(tag, multiple=multiple, requeue=True)


async def drain(
    raw: Any,
    queue: str,
    sink: Sink,
    result: HarvestResult,
    *,
    ready: int,
    limit: int | None,
    batch_size: int,
    prefetch: int,
    idle: float,
    timeout: float,
    vhost: str,
) -> None:
    """Consume with manual acks until the queue is empty or ``limit`` is reached; ack each batch
    after the sink returned. The next batch is read (and converted) while the previous one is
    stored (:func:`brokers.pipeline.store_ahead`); if anything fails, every batch not yet acked
    is nacked (requeued) and the error propagates. ``ready`` is the depth at the start: once that
    many arrived, the depth is re-checked at once instead of waiting ``idle`` seconds for more."""
    what = f"harvest {queue!r}"
    pending: asyncio.Queue[DeliveredMessage] = asyncio.Queue()

    async def on_message(message: DeliveredMessage) -> None:
        pending.put_nowait(message)

    settler = Settler(raw)

    async def batches():
        expected, read = ready, 0
        quiet_since: float | None = None
        while limit is None or read < limit:
            want = batch_size if limit is None else min(batch_size, limit - read)
            batch: list[DeliveredMessage] = []
            while len(batch) < want:
                if not pending.empty():
                    batch.append(pending.get_nowait())
                elif read + len(batch) >= expected:
                    break  # everything counted has arrived: flush, then re-check the depth
                else:
                    try:
                        batch.append(await asyncio.wait_for(pending.get(), idle))
                    except TimeoutError:
                        break
            if batch:
                read += len(batch)
                yield batch
                quiet_since = None
            if len(batch) == want or not pending.empty():
                continue
            # Unacked deliveries (the batch being stored) are not "ready": 0 means drained.
            depth = await ready_count(raw, queue, timeout=timeout, vhost=vhost)
            if depth == 0 and pending.empty():
                result.exhausted = True
                return
            expected = read + depth  # published meanwhile, or requeued by others
            now = time.monotonic()
            quiet_since = quiet_since or now
            if not batch and now - quiet_since > timeout:
                # ready messages that are never delivered (another single active consumer, a
                # stuck broker): stop rather than spin; the caller sees exhausted=False.
                log.warning("harvest %r: %d ready but none delivered for %.0fs", queue, depth, timeout)
                return

    async def convert(batch: list[DeliveredMessage]) -> list[HarvestedMessage]:
        return [harvested(queue, m) for m in batch]

    async def acknowledge(batch: list[DeliveredMessage]) -> None:
        with amqp_errors(what, timeout):
            await settler.settle(batch, ack=True)
        result.received += len(batch)
        result.batches += 1

    async def release(batch: list[DeliveredMessage]) -> None:
        with contextlib.suppress(*AMQP_FAILURES):  # a dead channel requeues them anyway
            await settler.settle(batch, ack=False)

    with amqp_errors(what, timeout):
        await raw.basic_qos(prefetch_count=prefetch, timeout=timeout)
        consumer = await raw.basic_consume(queue, on_message, no_ack=False, timeout=timeout)
    try:
        await store_ahead(batches(), convert, sink, acknowledge=acknowledge, release=release)
    finally:
        with contextlib.suppress(*AMQP_FAILURES):
            await raw.basic_cancel(consumer.consumer_tag, timeout=timeout)


async def copy_pass(
    raw: Any,
    queue: str,
    sink: Sink,
    result: HarvestResult,
    *,
    ready: int,
    limit: int | None,
    batch_size: int,
    timeout: float,
) -> None:
    """Take up to ``ready`` messages (one pass) with basic.get, hand them to the sink in batches
    and keep them all unacked, then requeue them together: taken messages are not ready, so
    the pass never meets its own requeues."""
    what = f"harvest {queue!r}"
    target = ready if limit is None else min(ready, limit)
    last_tag: int | None = None  # everything taken so far is unacked; this tag requeues it all
    try:
        while result.received < target:
            want = min(batch_size, target - result.received)
            batch: list[DeliveredMessage] = []
            with amqp_errors(what, timeout):
                while len(batch) < want:
                    got = await raw.basic_get(queue, no_ack=False, timeout=timeout)
                    if isinstance(got.delivery, commands.Basic.GetEmpty):
                        break
                    batch.append(got)
            if not batch:
                break
            last_tag = batch[-1].delivery_tag
            await sink([harvested(queue, m) for m in batch])
            result.received += len(batch)
            result.batches += 1
            if len(batch) < want:
                break  # the queue ran dry before the pass ended
        result.exhausted = limit is None or result.received < target or result.received >= ready
    finally:
        if last_tag is not None:
            with contextlib.suppress(*AMQP_FAILURES):  # closing the channel requeues them too
                await raw.basic_nack(last_tag, multiple=True, requeue=True)
