"""``NatsAdapter``: the :class:`~brokers.base.BrokerAdapter` for NATS JetStream (and core NATS)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import ClassVar

from nats.aio.client import Client
from nats.js import JetStreamContext

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
    Preparation,
    RedriveMessage,
    RedriveOutcome,
    Sink,
    SourceSpec,
)

from . import admin, discovery, harvest, redrive
from .connection import JetStream, api_prefix, connect, translate

_STORED = Capability.HARVEST | Capability.REDRIVE | Capability.REMOVE_FROM_DLQ | Capability.PEEK


def _version(nc: Client) -> str:
    v = nc.connected_server_version
    try:
        return f"{v.major}.{v.minor}.{v.patch}" + (f"-{v.prerelease}" if v.prerelease else "")
    except (TypeError, ValueError, AttributeError):  # an unusual version string
        return repr(v).removeprefix("<nats server v").rstrip(">")


class NatsAdapter(BrokerAdapter):
    """NATS JetStream dead letters, three ways (see :mod:`brokers.nats.harvest`).

    Connection options (``ConnectionConfig.options``): ``token``; ``domain`` or ``api_prefix``
    (JetStream domain / prefix); ``max_reconnect_attempts`` (default 1); ``client_name``;
    ``redrive_window`` (concurrent publishes, default 256); ``batch_max_bytes`` (default 32 MiB).
    ``url`` may list several servers, comma-separated.

    Source options: ``capture_stream``, ``durable``, ``max_age``, ``replicas``, ``ack_wait``
    (advisory); ``durable``, ``filter_subject``, ``delete_after_harvest``, ``strip_subject_prefix``
    (dlq_stream); ``listen_seconds``, ``queue_group`` (subject).
    """

    kind = "nats"
    modes = ("advisory", "dlq_stream", "subject")
    capabilities = _STORED | Capability.DISCOVER
    #: what each source mode supports; core-NATS subjects keep nothing (LIVE_ONLY).
    MODE_CAPABILITIES: ClassVar[dict[str, Capability]] = {
        "advisory": _STORED | Capability.PREPARE,
        "dlq_stream": _STORED,
        "subject": Capability.HARVEST | Capability.REDRIVE | Capability.LIVE_ONLY,
    }

    def __init__(self, config: ConnectionConfig):
        super().__init__(config)
        self._nc: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    @classmethod
    def mode_capabilities(cls, mode: str) -> Capability:
        try:
            return cls.MODE_CAPABILITIES[mode]
        except KeyError:
            raise BrokerError(f"unknown NATS source mode {mode!r}", permanent=True) from None

    # ---- connection ------------------------------------------------------------------------
    async def _client(self) -> Client:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._lock is None:
            # bound to another event loop (the harvester's, a forked child's) or never used
            self._nc, self._loop, self._lock = None, loop, asyncio.Lock()
        async with self._lock:  # concurrent callers (redrive chunks) share one connection
            if self._nc is not None and self._nc.is_closed:
                self._nc = None
            if self._nc is not None and not self._nc.is_connected:
                # A kept connection (brokers.shared) that lost the server is reconnecting or
                # draining: publishes would only be buffered. Drop it and connect afresh.
                stale, self._nc = self._nc, None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(stale.close(), self.config.timeout)
            if self._nc is None:
                self._nc = await connect(self.config)
            return self._nc

    async def _jetstream(self) -> tuple[JetStreamContext, JetStream]:
        nc = await self._client()
        prefix = api_prefix(self.config)
        return nc.jetstream(prefix=prefix, timeout=self.config.timeout), JetStream(
            nc, prefix, self.config.timeout
        )

    def _max_bytes(self, nc: Client) -> int:
        wanted = int(self.config.options.get("batch_max_bytes", 32 << 20))
        return max(wanted, 2 * nc.max_payload + (64 << 10))  # any single message always fits

    async def close(self) -> None:
        """Close the connection. Safe to call twice; a connection a concurrent call is opening
        is waited for and closed too."""
        if self._loop is not asyncio.get_running_loop() or self._lock is None:
            self._nc = None  # opened on another loop (or never): cannot be closed from here
            return
        async with self._lock:
            nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()

    # ---- contract --------------------------------------------------------------------------
    async def health(self) -> Health:
        """Connects, pings (the round trip is the latency), reads the server version and asks
        JetStream for the account info: ``ok`` only when JetStream answers too."""
        version, latency = "", None
        try:
            nc = await self._client()
            started = time.perf_counter()
            with translate("ping"):
                await nc.flush(timeout=max(1, int(self.config.timeout)))
            latency = (time.perf_counter() - started) * 1000
            version = _version(nc)
            jsm, _ = await self._jetstream()
            with translate("JetStream account info"):
                await jsm.account_info()
        except Exception as exc:  # health never raises
            where = "JetStream: " if version else ""
            return Health(ok=False, server_version=version, latency_ms=latency, error=f"{where}{exc}")
        return Health(ok=True, server_version=version, latency_ms=latency)

    async def discover(self) -> list[DiscoveredSource]:
        jsm, _ = await self._jetstream()
        return await discovery.discover(jsm)

    async def prepare(self, source: SourceSpec) -> Preparation:
        """Advisory sources: create the capture stream, or find the user's stream that already
        captures the advisories (idempotent; see :func:`admin.prepare_capture`). Other modes:
        nothing (a DLQ stream keeps its messages; a core subject keeps nothing)."""
        self.mode_capabilities(source.mode)
        if source.mode != "advisory":
            return Preparation()
        jsm, _ = await self._jetstream()
        return await admin.prepare_capture(jsm, source)

    async def harvest(
        self, source: SourceSpec, sink: Sink, *, limit: int | None = None, batch_size: int = 100
    ) -> HarvestResult:
        self.mode_capabilities(source.mode)
        if batch_size < 1 or (limit is not None and limit < 0):
            raise BrokerError("batch_size must be >= 1 and limit >= 0", permanent=True)
        if limit == 0:
            return HarvestResult()
        nc = await self._client()
        if source.mode == "subject":
            return await harvest.harvest_subject(nc, source, sink, limit=limit, batch_size=batch_size)
        jsm, js = await self._jetstream()
        run = harvest.harvest_advisory if source.mode == "advisory" else harvest.harvest_dlq_stream
        return await run(
            jsm, js, source, sink, limit=limit, batch_size=batch_size, max_bytes=self._max_bytes(nc)
        )

    async def backlog(self, source: SourceSpec) -> int | None:
        """Advisory / dlq_stream: the durable's ``num_pending + num_ack_pending`` (before the first
        harvest: what the stream holds for it). Subject mode: None (nothing is kept)."""
        self.mode_capabilities(source.mode)
        if source.mode == "subject":
            return None
        jsm, _ = await self._jetstream()
        durable = admin.durable_name(source)
        if source.mode == "advisory":
            capture = admin.capture_stream_name(source)
            count = await admin.pending(jsm, capture, durable)
            if count is None:
                count = await admin.count_subjects(jsm, capture, admin.advisory_filter(source.address))
            return count
        facts = await admin.stream_facts(jsm, source.address)
        if not facts.exists:
            return None
        if not source.remove_after_harvest and facts.retention != "limits":
            next_seq = max(int(source.cursor.get("next_seq") or 1), facts.first_seq)
            return min(facts.messages, max(0, facts.last_seq - next_seq + 1))
        count = await admin.pending(jsm, source.address, durable)
        return facts.messages if count is None else count

    async def redrive(
        self,
        messages: Sequence[RedriveMessage],
        *,
        destination: Destination | None = None,
        header_policy: HeaderPolicy | None = None,
    ) -> list[RedriveOutcome]:
        if not messages:
            return []
        return await redrive.redrive(
            await self._client(),
            messages,
            destination=destination,
            header_policy=header_policy,
            timeout=self.config.timeout,
            window=int(self.config.options.get("redrive_window", redrive.DEFAULT_WINDOW)),
        )
