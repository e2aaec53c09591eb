"""Store one harvested batch while the next is read, and settle batches in order on the broker.

Every adapter's harvest has the same shape: read a batch from the broker, convert it, hand it to
the sink (which commits it to the database), then acknowledge it on the broker. Done strictly in
turn, the broker and the Python conversion wait for the database and the database waits for
them. :func:`store_ahead` keeps at most one batch in the sink while the adapter reads and
converts the next one, without weakening the contract of :data:`brokers.base.Sink`:

* a batch is acknowledged only after *its own* sink call returned, and batches are acknowledged
  in the order they were read;
* if anything fails (the sink, a read, an acknowledgement), every batch read but not yet
  acknowledged is handed to ``release`` (best effort, e.g. a requeue or a NAK) and the error
  propagates. A batch whose store did complete is acknowledged first when that is still
  possible; if not, the broker redelivers it and the (source, position) UNIQUE makes the second
  copy a duplicate, never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

from .base import HarvestedMessage, Sink

log = logging.getLogger(__name__)

T = TypeVar("T")


class _InFlight(Generic[T]):
    def __init__(self, raw: T, task: asyncio.Future):
        self.raw, self.task = raw, task


def _forget(unsettled: list, raw) -> None:
    """Remove ``raw`` by identity (two batches may compare equal)."""
    for i, item in enumerate(unsettled):
        if item is raw:
            del unsettled[i]
            return


async def store_ahead(
    batches: AsyncIterator[T],
    convert: Callable[[T], Awaitable[list[HarvestedMessage]]],
    sink: Sink,
    *,
    acknowledge: Callable[[T], Awaitable[None]],
    release: Callable[[T], Awaitable[None]] | None = None,
) -> None:
    """Drive the raw ``batches`` (read lazily from the broker) through ``convert`` and ``sink``.

    A raw batch is whatever the adapter needs to settle it on the broker. ``acknowledge(raw)``
    runs once the batch's sink call returned; ``release(raw)`` runs for every batch read and not
    acknowledged when something fails. The next batch is read and converted while the previous
    one is being stored.
    """
    unsettled: list[T] = []
    current: _InFlight[T] | None = None

    async def settle(raw: T) -> None:
        await acknowledge(raw)
        _forget(unsettled, raw)

    try:
        async for raw in batches:
            unsettled.append(raw)
            converted = await convert(raw)
            if current is not None:
                await current.task
                await settle(current.raw)
                current = None
            if converted:
                current = _InFlight(raw, asyncio.ensure_future(sink(converted)))
            else:  # nothing to store (e.g. unparsable advisories): settle it at once
                await settle(raw)
        if current is not None:
            await current.task
            await settle(current.raw)
            current = None
    except BaseException:
        if current is not None:
            # Never leave a store running unobserved: wait for it, and if it did commit, try to
            # acknowledge it so it is not redelivered (a failed ack only means a duplicate).
            await asyncio.wait([current.task])
            if not current.task.cancelled() and current.task.exception() is None:
                with contextlib.suppress(Exception):
                    await settle(current.raw)
        if release is not None:
            for raw in unsettled:
                try:
                    await release(raw)
                except Exception:  # noqa: BLE001 - best effort: the broker redelivers anyway
                    log.debug("releasing an unstored batch failed", exc_info=True)
        raise
    finally:
        closing = getattr(batches, "aclose", None)
        if closing is not None:
            with contextlib.suppress(Exception):
                await closing()
