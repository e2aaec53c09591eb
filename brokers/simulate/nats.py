"""NATS JetStream demo: the shipments work stream and a failing pull consumer.

A Limits-retention stream (``allow_direct``) and a pull consumer with ``max_deliver=2``; the
worker terminates some messages (``+TERM <reason>``) and naks the rest until ``MAX_DELIVERIES``
fires. nats-py is imported lazily (``import nats`` below is the top-level client library, not
this module: imports are absolute).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import uuid
from collections import Counter
from dataclasses import dataclass

from .common import _ticks, _wait_until, check_prefix, log
from .payloads import _term_reason, _trace, garbage, shipment


@dataclass(frozen=True)
class NatsNames:
    stream: str
    subjects: str
    consumer: str


def nats_names(prefix: str) -> NatsNames:
    p = check_prefix(prefix)
    stream = re.sub(r"[^A-Za-z0-9_-]", "_", p).upper() + "_SHIPMENTS"
    return NatsNames(stream, f"{p}.shipments", "shipment-worker")


async def nats_setup(url: str, *, prefix: str) -> NatsNames:
    """Create (or update) the shipments work stream and its failing consumer. Idempotent.

    The advisory capture stream is not created here: the NATS adapter's ``prepare()`` owns it
    (``seed_demo`` calls it), and it must exist before the first failure."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
    from nats.js.errors import BadRequestError

    n = nats_names(prefix)
    config = StreamConfig(
        name=n.stream,
        subjects=[f"{n.subjects}.>"],
        retention=RetentionPolicy.LIMITS,  # keeps failed payloads for the harvester (term = ack elsewhere)
        allow_direct=True,
        max_age=7 * 86400,
        max_msgs=200_000,
    )
    # A bounded value: in nats-py, 0 means "no limit", so a down server would hang this forever.
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        try:
            await js.add_stream(config)
        except BadRequestError:  # exists with another config
            await js.update_stream(config)
        await js.add_consumer(
            n.stream,
            ConsumerConfig(
                durable_name=n.consumer, ack_policy=AckPolicy.EXPLICIT, max_deliver=2, ack_wait=30
            ),
        )
    finally:
        await nc.close()
    return n


async def nats_traffic(
    url: str,
    *,
    prefix: str,
    rate: float = 2.0,
    count: int | None = None,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    seed: int | None = None,
) -> Counter:
    """Publish shipments; the worker terminates some (``terminated``) and naks the rest until
    ``max_deliver`` (``max_deliveries``). Returns a Counter by kind."""
    import nats
    from nats.errors import TimeoutError as NatsTimeout

    n = nats_names(prefix)
    rng = random.Random(seed)
    stop = stop or asyncio.Event()
    caused: Counter = Counter()
    nc = await nats.connect(url, connect_timeout=5, name="dlqadmin-demo-traffic")
    version = nc.connected_server_version
    # Servers before 2.10.4 ignore "+TERM <reason>" completely; a plain +TERM works everywhere.
    reasons = (version.major, version.minor, version.patch) >= (2, 10, 4)
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind(n.consumer, stream=n.stream)
    published = 0
    firsts = itertools.count()

    async def work() -> None:
        while True:
            try:
                # A waiting pull is also what makes max_deliver fire promptly on older servers.
                msgs = await sub.fetch(10, timeout=1)
            except NatsTimeout:
                continue
            for msg in msgs:
                delivered = msg.metadata.num_delivered
                nth = next(firsts) if delivered == 1 else -1  # the first two show both ways
                if nth == 0 or (nth > 1 and rng.random() < 0.55):
                    if reasons:
                        await nc.publish(msg.reply, f"+TERM {_term_reason(rng, msg.data)}".encode())
                    else:
                        await msg.term()
                    caused["terminated"] += 1
                else:  # e.g. the carrier API is down: retry, until max_deliver gives up
                    await msg.nak()
                    if delivered >= 2:
                        caused["max_deliveries"] += 1

    worker = asyncio.create_task(work())
    try:
        async for _ in _ticks(rate=rate, count=count, duration=duration, stop=stop):
            raw = garbage(rng) if rng.random() < 0.15 else None
            body = raw or json.dumps(shipment(rng)).encode()
            event = rng.choice(["created", "label_requested", "dispatched"])
            await js.publish(
                f"{n.subjects}.{event}",
                body,
                stream=n.stream,
                headers={
                    "Nats-Msg-Id": str(uuid.uuid4()),
                    "content-type": "application/octet-stream" if raw else "application/json",
                    "tenant": rng.choice(["acme", "globex", "initech"]),
                    "traceparent": _trace(rng),
                },
            )
            published += 1
        if count is not None:
            if not await _wait_until(lambda: sum(caused.values()) >= published, 30):
                log.warning("nats: not every failure happened within 30 s: %s", dict(caused))
            await asyncio.sleep(0.5)  # let the last naks reach max_deliver
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await nc.close()
    return caused
