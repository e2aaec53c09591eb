"""The RabbitMQ adapter (AMQP 0-9-1 via aio-pika / aiormq)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import aio_pika

from brokers.base import (
    BrokerAdapter,
    BrokerError,
    Capability,
    ConnectionConfig,
    Destination,
    DiscoveredSource,
    HarvestResult,
    HeaderPolicy,
    Health,
    RedriveMessage,
    RedriveOutcome,
    Sink,
    SourceSpec,
)

from . import harvest as harvesting
from . import redrive as redriving
from .connection import amqp_errors, amqp_url, connect, display_address, readable, vhost_of
from .management import ManagementUnavailable, find_dead_letter_queues

log = logging.getLogger(__name__)

#: publishes in flight at once during a redrive (``ConnectionConfig.options["publish_window"]``).
DEFAULT_PUBLISH_WINDOW = 256
#: seconds without a delivery before a harvest re-checks the queue depth (``idle_timeout`` option).
DEFAULT_IDLE_TIMEOUT = 1.0


class RabbitMQAdapter(BrokerAdapter):
    """Dead-letter queues on RabbitMQ.

    One AMQP connection per adapter instance, opened on first use, reopened on the next call if
    it was lost, and closed by :meth:`close`. A connection belongs to the event loop that opened
    it: used from another loop (the harvester's, the broker loop of ``brokers.run``, a forked
    child's) the adapter opens a new connection and drops the old one, which cannot be closed
    from there, so keep an adapter on one loop. Every operation uses its own channel, because a
    broker error (e.g. a passive declare of a missing queue) closes the channel it happened on.

    Connection options: ``management_url`` (discovery), ``publish_window`` (redrive pipelining,
    default 256). Source options: ``prefetch`` (default: twice the batch size), ``idle_timeout``
    (seconds, default 1).
    """

    kind: ClassVar[str] = "rabbitmq"
    modes: ClassVar[tuple[str, ...]] = ("queue",)
    capabilities: ClassVar[Capability] = (
        Capability.HARVEST | Capability.REDRIVE | Capability.DISCOVER | Capability.REMOVE_FROM_DLQ
    )

    def __init__(self, config: ConnectionConfig):
        super().__init__(config)
        self._conn: aio_pika.abc.AbstractConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._vhost = vhost_of(config)

    # ---- connection ---------------------------------------------------------------------------
    async def _connection(self) -> aio_pika.abc.AbstractConnection:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._conn, self._loop, self._lock = None, loop, asyncio.Lock()
        assert self._lock is not None
        async with self._lock:
            if not self._connected():
                stale, self._conn = self._conn, None
                if stale is not None and not stale.is_closed:  # the broker dropped it: tidy up
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(stale.close(), self.config.timeout)
                self._conn = await connect(self.config)
            return self._conn

    def _connected(self) -> bool:
        """True while the connection is usable. aio-pika marks itself closed a little after the
        aiormq connection underneath was closed by the broker: look at both."""
        conn = self._conn
        transport = getattr(conn, "transport", None)
        return (
            conn is not None
            and not conn.is_closed
            and transport is not None
            and not transport.connection.is_closed
        )

    async def _channel(
        self, what: str, *, confirms: bool = False
    ) -> tuple[aio_pika.abc.AbstractChannel, Any]:
        """A new channel and its aiormq channel (publisher confirms + returns when ``confirms``)."""
        conn = await self._connection()
        try:
            with amqp_errors(what, self.config.timeout):
                channel = await conn.channel(publisher_confirms=confirms, on_return_raises=confirms)
                return channel, await channel.get_underlay_channel()
        except RuntimeError as exc:  # aiormq: "<Connection ...> closed" (closed under our feet)
            raise BrokerError(f"{what}: {readable(exc)}", permanent=False) from exc

    async def _raw_channel(self, what: str) -> Any:
        """A new aiormq channel, without aio-pika's wrapper: for harvest passes and queue counts.
        aio-pika (10.2) leaves about 16 KB behind on its connection for every wrapped channel
        opened and closed, which a follow-mode harvester opening channels all day cannot afford
        (issue 18: memory grew ~1 MiB/s with 100 idle queues); a raw channel leaves nothing."""
        conn = await self._connection()
        try:
            with amqp_errors(what, self.config.timeout):
                return await conn.transport.connection.channel(
                    publisher_confirms=False, timeout=self.config.timeout
                )
        except (RuntimeError, AttributeError) as exc:  # closed under our feet (transport gone)
            raise BrokerError(f"{what}: {readable(exc)}", permanent=False) from exc

    async def _ready(self, raw: Any, queue: str) -> int:
        return await harvesting.ready_count(raw, queue, timeout=self.config.timeout, vhost=self._vhost)

    async def close(self) -> None:
        """Close the connection. Safe to call twice, and after the connection was lost. A
        connection being opened by a concurrent call (one chunk reconnecting while another
        discards the adapter) is waited for and closed too, never left open and unowned."""
        if self._loop is not asyncio.get_running_loop() or self._lock is None:
            self._conn = None  # opened on another loop (or never): cannot be closed from here
            return
        async with self._lock:
            conn, self._conn = self._conn, None
        if conn is None or conn.is_closed:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), self.config.timeout)

    # ---- health, discovery, backlog ------------------------------------------------------------
    async def health(self) -> Health:
        """Connect, time one round trip (basic.qos on a fresh channel), report the broker version.
        Never raises."""
        try:
            channel, raw = await self._channel("health check")
            try:
                with amqp_errors("health check", self.config.timeout):
                    start = time.perf_counter()
                    await raw.basic_qos(prefetch_count=0, timeout=self.config.timeout)
                    latency_ms = (time.perf_counter() - start) * 1000
            finally:
                await redriving.close_quietly(channel)
            props = self._conn.transport.connection.server_properties if self._conn else {}
            version = props.get("version", "")
            version = version.decode() if isinstance(version, bytes) else str(version)
            return Health(ok=True, server_version=version, latency_ms=round(latency_ms, 3))
        except BrokerError as exc:
            return Health(ok=False, error=exc.message)
        except Exception as exc:  # health() must never raise
            return Health(ok=False, error=f"{type(exc).__name__}: {readable(exc)}")

    async def discover(self) -> list[DiscoveredSource]:
        """Queues of the connection's vhost that receive dead letters (bound, directly or via
        exchange-to-exchange bindings, to some queue's dead-letter exchange, set by argument or
        policy) or are named like a DLQ. Read-only.

        Needs the management plugin: HTTP API at ``options["management_url"]`` or
        http://<host>:15672, same credentials. Message counts come from AMQP when it is reachable
        (the API's lag a few seconds). If the API is unavailable, returns [] (and logs why), but
        raises a transient BrokerError when AMQP is unreachable too.
        """
        amqp_url(self.config)  # a malformed URL is a permanent error, whatever the API says
        try:
            candidates = await asyncio.to_thread(find_dead_letter_queues, self.config)
        except ManagementUnavailable as exc:
            log.warning("rabbitmq discovery on %s: %s", display_address(self.config), exc)
            await self._connection()  # raises BrokerError when the broker itself is unreachable
            return []
        counts: dict[str, int | None] = {c.queue: c.messages for c in candidates}
        with contextlib.suppress(BrokerError):
            counts = await self._counts(list(counts))
        return [
            DiscoveredSource(mode="queue", address=c.queue, reason=c.reason, messages=counts[c.queue])
            for c in candidates
            if c.queue in counts
        ]

    async def _counts(self, queues: list[str]) -> dict[str, int | None]:
        """Ready counts by passive declare; queues deleted meanwhile are left out."""
        counts: dict[str, int | None] = {}
        channel = raw = None
        try:
            for queue in queues:
                if channel is None or channel.is_closed:
                    channel, raw = await self._channel("count queues")
                try:
                    counts[queue] = await self._ready(raw, queue)
                except BrokerError as exc:
                    if not exc.permanent:
                        raise
        finally:
            await redriving.close_quietly(channel)
        return counts

    async def backlog(self, source: SourceSpec) -> int | None:
        """Ready messages in the queue (deliveries unacked by other consumers are not counted).
        Raises BrokerError (permanent when the queue does not exist)."""
        raw = await self._raw_channel(f"inspect queue {source.address!r}")
        try:
            return await self._ready(raw, source.address)
        finally:
            await redriving.close_quietly(raw)

    # ---- harvest ------------------------------------------------------------------------------
    async def harvest(
        self, source: SourceSpec, sink: Sink, *, limit: int | None = None, batch_size: int = 100
    ) -> HarvestResult:
        """Read the queue in batches with manual acks; a batch is acked only after ``sink``
        returned. If the sink raises, the batch (and anything prefetched) is requeued and the
        sink's exception propagates unchanged. Broker failures raise BrokerError (transient for
        connection problems, permanent for a missing queue); nothing unstored is ever acked.

        ``remove_after_harvest=True`` (default, destructive): a consumer with prefetch
        ``options["prefetch"]`` (default twice ``batch_size``: the next batch is read while the
        previous one is stored) reads until the queue is empty or
        ``limit`` is reached. It returns as soon as everything counted at the start has arrived
        and the queue reports 0 ready; a delivery gap of ``idle_timeout`` seconds also triggers
        that check.

        ``remove_after_harvest=False``: RabbitMQ cannot peek, so messages are taken with
        basic.get and all of them are requeued (nack) after the pass. A pass covers at most the
        messages ready at the start, so it never loops over its own requeues. Requeued messages
        keep their place in the queue and come back with the redelivered flag; their positions
        do not change, so the next pass stores no duplicates. On a quorum DLQ every pass counts
        toward the DLQ's own delivery limit (20 by default since RabbitMQ 4.0).

        Position: ``"<queue>:<sha256>"`` over queue, body, basic properties and headers (x-death
        time and count included; x-delivery-count and the redelivered flag excluded).
        """
        if source.mode not in self.modes:
            raise BrokerError(f"rabbitmq sources have mode 'queue', not {source.mode!r}", permanent=True)
        queue, timeout = source.address, self.config.timeout
        result = HarvestResult()
        if limit is not None and limit <= 0:
            result.backlog = await self.backlog(source)
            return result
        batch_size = max(1, int(batch_size))
        raw = await self._raw_channel(f"harvest {queue!r}")
        try:
            ready = await self._ready(raw, queue)
            if ready == 0:
                result.exhausted = True
            elif source.remove_after_harvest:
                await harvesting.drain(
                    raw,
                    queue,
                    sink,
                    result,
                    ready=ready,
                    limit=limit,
                    batch_size=batch_size,
                    # two batches: the next is delivered while the previous one is stored
                    prefetch=max(1, int(source.options.get("prefetch") or 2 * batch_size)),
                    idle=float(source.options.get("idle_timeout") or DEFAULT_IDLE_TIMEOUT),
                    timeout=timeout,
                    vhost=self._vhost,
                )
            else:
                await harvesting.copy_pass(
                    raw, queue, sink, result, ready=ready, limit=limit, batch_size=batch_size, timeout=timeout
                )
        finally:
            await redriving.close_quietly(raw)  # requeues whatever was delivered but not settled
        if ready == 0:
            result.backlog = 0  # an idle pass: no second channel to count what was just counted
            return result
        with contextlib.suppress(BrokerError):
            result.backlog = await self.backlog(source)
        if source.remove_after_harvest and result.backlog == 0:
            result.exhausted = True
        return result

    # ---- redrive ------------------------------------------------------------------------------
    async def redrive(
        self,
        messages: Sequence[RedriveMessage],
        *,
        destination: Destination | None = None,
        header_policy: HeaderPolicy | None = None,
    ) -> list[RedriveOutcome]:
        """Publish each message (publisher confirms, ``mandatory``); ``ok`` only after the
        broker's Basic.Ack. Not idempotent: retrying an unknown outcome may duplicate, so
        consumers dedup on ``x-dlq-redrive-id``. Publishes are pipelined in windows of
        ``options["publish_window"]``.

        Target: by default the default exchange with routing key = the queue the message died in
        (only that queue gets it); when no queue is recorded but the original exchange and
        routing key are (Spring AMQP's ``RepublishMessageRecoverer``), those. ``use_original_route``:
        the original exchange and routing key (fans out again to every bound queue).
        ``destination.exchange`` / ``routing_key`` win. No target at all: a permanent outcome
        saying the message needs a destination.

        Headers: the originals per ``header_policy`` (x-death, x-first/last-death-* and
        x-delivery-count always stripped; a non-UTF-8 long string goes back as the same long
        string), x-retry-count (int) + x-dlq-redrive-id + x-dlq-redriven-at,
        x-original-exchange / x-original-routingKey / x-original-queue, the policy's extra
        headers and, if asked, Spring's ``retry-count``. Properties come from the harvested ones
        with delivery_mode=2; user_id and expiration are never copied. A message without a
        message_id gets a random one (aiormq needs it to match returned messages).

        Outcomes: unroutable, missing exchange, unencodable -> permanent; broker nack, confirm
        timeout, lost connection -> transient. Raises BrokerError only when nothing could be
        attempted (broker unreachable).
        """
        messages = list(messages)
        if not messages:
            return []
        timeout = self.config.timeout
        await self._connection()  # unreachable: BrokerError, nothing attempted

        async def open_channel():
            return await self._channel("redrive", confirms=True)

        async def open_probe():
            return await self._channel("redrive")

        plans, outcomes = redriving.plan(
            messages, destination or Destination(), header_policy or HeaderPolicy()
        )
        missing = await redriving.missing_exchanges(
            open_probe, {p.exchange for p in plans if p.exchange}, timeout
        )
        for p in plans:
            if p.exchange in missing:
                outcomes[p.index] = redriving.failed(p.message, p.destination, missing[p.exchange], True)
        await redriving.publish_all(
            open_channel,
            self._connected,
            [p for p in plans if p.exchange not in missing],
            outcomes,
            window=max(1, int(self.config.options.get("publish_window") or DEFAULT_PUBLISH_WINDOW)),
            timeout=timeout,
        )
        return [o for o in outcomes if o is not None]
