"""Discovery on a JetStream server: where dead letters collect, or could. Read-only.

- a stream that captures consumer advisories (dlqadmin's ``DLQADMIN_ADV_*`` or the user's):
  an ``advisory`` source for each stream it watches, ready to harvest;
- a stream named like a DLQ: a ``dlq_stream`` source;
- every other stream (a work stream): an ``advisory`` source with ``needs_prepare`` (saving it
  creates the capture), listing its consumers and their ``max_deliver``. Streams whose consumers
  set ``max_deliver`` come first: their exhausted messages are what an advisory source keeps.
  A stream without such consumers is suggested too, since a consumer that terminates a message
  (``AckTerm``) makes a dead letter whatever its limit, and consumers may be added later.

Key-value buckets and object stores (streams on ``$KV.`` / ``$O.`` subjects) are storage, not
work streams, and are not suggested.
"""

from __future__ import annotations

import asyncio

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import StreamInfo

from brokers.base import DiscoveredConsumer, DiscoveredSource

from .admin import CAPTURE_PREFIX, DEFAULT_DURABLE, DLQ_NAME, list_streams, sanitize, watched_stream
from .connection import translate

#: subjects of the streams behind key-value buckets and object stores
STORAGE_SUBJECTS = ("$KV.", "$O.")
#: consumer listings in flight at once
PARALLEL = 8
LOST = "advisories are lost while nothing keeps them"


async def discover(js: JetStreamContext) -> list[DiscoveredSource]:
    """Capture streams and the streams they watch, DLQ-named streams, then every work stream
    (with its consumers' ``max_deliver``, limited ones first)."""
    captured: dict[str, list[StreamInfo]] = {}
    dlq: list[StreamInfo] = []
    work: list[StreamInfo] = []
    for info in await list_streams(js):
        subjects = info.config.subjects or []
        watched = {w for s in subjects if (w := watched_stream(s))}
        for stream in watched:
            captured.setdefault(stream, []).append(info)
        if watched or (subjects and all(s.startswith(STORAGE_SUBJECTS) for s in subjects)):
            continue
        (dlq if DLQ_NAME.search(info.config.name or "") else work).append(info)
    names = {info.config.name for info in work} | {s for s in captured if s != "*"}
    consumers = await _consumers(js, sorted(names))

    found = [
        DiscoveredSource(
            mode="dlq_stream",
            address=info.config.name,
            reason=f"stream name {info.config.name!r} looks like a dead-letter queue",
            messages=info.state.messages,
        )
        for info in dlq
    ]
    for stream, captures in sorted(captured.items()):
        if stream != "*":
            found += [_advisory_source(stream, c, consumers.get(stream) or []) for c in captures]
    wildcard = captured.get("*", [])

    def limited_first(info: StreamInfo) -> tuple[bool, str]:
        mine = consumers.get(info.config.name) or []
        return (not any(c.max_deliver for c in mine), info.config.name)

    for info in sorted(work, key=limited_first):
        name = info.config.name
        mine = consumers.get(name)
        if name in captured or mine is None:  # already listed, or deleted since it was listed
            continue
        if wildcard:
            found.append(_advisory_source(name, wildcard[0], mine))
            continue
        found.append(
            DiscoveredSource(
                mode="advisory",
                address=name,
                reason=_why(mine),
                options={"needs_prepare": True},
                consumers=mine,
            )
        )
    return found


def _why(consumers: list[DiscoveredConsumer]) -> str:
    limited = [c for c in consumers if c.max_deliver]
    if limited:
        why = ", ".join(f"consumer {c.name} has max_deliver {c.max_deliver}" for c in limited)
        return f"{why}; enable capture ({LOST})"
    if consumers:
        who = ", ".join(c.name for c in consumers)
        return (
            f"work stream; its consumers ({who}) set no max_deliver, so only the messages they "
            f"terminate (AckTerm) die; enable capture ({LOST})"
        )
    return f"work stream without consumers yet; enable capture before they fail messages ({LOST})"


async def _consumers(js: JetStreamContext, streams: list[str]) -> dict[str, list[DiscoveredConsumer] | None]:
    """{stream: its consumers} (None: the stream no longer exists), a few streams at a time."""
    gate = asyncio.Semaphore(PARALLEL)

    async def one(stream: str) -> list[DiscoveredConsumer] | None:
        async with gate:
            with translate(f"list consumers of {stream}"):
                try:
                    infos = await js.consumers_info(stream)
                except nats.js.errors.NotFoundError:
                    return None
        out = []
        for info in infos:
            limit = info.config.max_deliver
            out.append(DiscoveredConsumer(name=info.name, max_deliver=limit if limit and limit > 0 else None))
        return sorted(out, key=lambda c: c.name)

    answers = await asyncio.gather(*(one(s) for s in streams))
    return dict(zip(streams, answers, strict=True))


def _advisory_source(
    stream: str, capture: StreamInfo, consumers: list[DiscoveredConsumer]
) -> DiscoveredSource:
    options: dict = {"capture_stream": capture.config.name}
    if capture.config.name != CAPTURE_PREFIX + sanitize(stream):
        # possibly shared by several watched streams: one durable (and filter) per stream
        options["durable"] = f"{DEFAULT_DURABLE}-{sanitize(stream)}"
    return DiscoveredSource(
        mode="advisory",
        address=stream,
        reason=f"stream {capture.config.name} captures the dead-letter advisories of {stream}",
        messages=capture.state.messages,
        options=options,
        consumers=consumers,
    )
