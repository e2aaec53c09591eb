"""Shared by every broker's traffic: the prefix check, the logger and the pacing helpers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

# One logger for the whole package (the name the demo's traffic log has always shown).
log = logging.getLogger("brokers.simulate")

_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")


def check_prefix(prefix: str) -> str:
    """Prefixes end up in queue, topic, subject and stream names: keep them portable."""
    if not _PREFIX_RE.match(prefix) or ".." in prefix or prefix.endswith("."):
        raise ValueError(f"invalid prefix {prefix!r}: use letters, digits, '.', '_' and '-'")
    return prefix


# --------------------------------------------------------------------------------------------
# Pacing


async def _ticks(
    *, rate: float, count: int | None, duration: float | None, stop: asyncio.Event
) -> AsyncIterator[int]:
    """Yield 0, 1, 2, ... about ``rate`` times a second until count, duration or ``stop``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    i = 0
    while not stop.is_set() and (count is None or i < count):
        if duration is not None and loop.time() - start >= duration:
            return
        yield i
        i += 1
        delay = start + i / rate - loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)


async def _wait_until(check: Callable[[], Awaitable[bool] | bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(0.1)
    return False
