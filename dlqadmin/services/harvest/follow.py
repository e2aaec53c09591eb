"""The long-running harvester behind ``manage.py harvest --follow``.

One asyncio loop watches every enabled source in rounds: each round gives every source one
bounded pass (so a stop request is honoured within one pass), up to ``concurrency`` passes at
once per connection (one open adapter per connection, shared by its passes), and sleeps
``poll_interval`` when the round found nothing. An idle source costs a few broker round trips per
round and no waiting: a Kafka member only looks at what its consumer already fetched, and a pass
that changed nothing writes nothing to the database (see :func:`source_harvest_with`). The
harvester backs off exponentially from a broker that is down while recording the failure on the
connection and the source. Any other failure of one source (a permanent broker error, a bug, an
input nothing foresaw) is recorded on that source, which then backs off on its own: one bad
source never stops the others. ``stop()`` (wired to SIGTERM/SIGINT) lets the passes in progress
finish their batch and starts no other: a batch is always committed to the database before the
broker acks it, so nothing is lost.

Several harvesters (replicas) may run at once on the same sources, and the brokers share the
work between them: RabbitMQ competing consumers on the dead-letter queue, one Kafka consumer
group per source whose partitions the replicas split (cooperative-sticky; the adapters are
created with ``follow=True``, :mod:`brokers.kafka.member`), one NATS durable pull consumer that
every replica fetches from. There is no lock around a source: the UNIQUE position keeps rows
single and error groups are counted under row locks. Each replica's heartbeat says what it
holds (sources, Kafka partitions) and its last batch (connections page, ``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connections

import brokers
from brokers.base import BrokerAdapter, BrokerError
from dlqadmin.models import Source
from dlqadmin.services import connection_health
from dlqadmin.services.connections import connection_config
from dlqadmin.services.harvest.store import (
    DB_OUTAGES,
    HarvestReport,
    failure_text,
    source_harvest_with,
    source_record_failure,
)
from dlqadmin.services.heartbeat import HARVESTER_BEAT_SECONDS, heartbeat_beat, heartbeat_stopped
from dlqadmin.services.search import BacklogIndexer

log = logging.getLogger("dlqadmin.services.harvester")  # the pre-package name, kept for logging configs

#: an idle pass that changes nothing rewrites its source row (last_harvest_at) at most this often
IDLE_WRITE_SECONDS = 10.0


def close_old_connections_now() -> None:
    """Close this thread's database connections (a broken one is reopened on next use)."""
    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()
        if conn.connection is not None and not conn.is_usable():
            conn.close()


@dataclass
class _ConnectionState:
    adapter: BrokerAdapter | None = None
    failures: int = 0
    retry_at: float = 0.0
    fingerprint: tuple = ()
    slots: asyncio.Semaphore | None = None  # bounds the passes running at once on this connection


@dataclass
class _SourceState:
    failures: int = 0
    retry_at: float = 0.0


@dataclass
class Harvester:
    """Harvest every enabled source (or ``source_names``) until ``stop()``."""

    source_names: list[str] | None = None
    poll_interval: float = 0.5
    pass_limit: int = 1000
    #: passes running at once on one connection (sources of one connection are polled together)
    concurrency: int = 8
    max_backoff: float = 30.0
    #: run the search indexer thread (dlqadmin.services.search) beside the harvest loop
    index_search: bool = True
    reports: list[HarvestReport] = field(default_factory=list)
    _stop: asyncio.Event | None = None
    _connections: dict[int, _ConnectionState] = field(default_factory=dict)
    _sources: dict[int, _SourceState] = field(default_factory=dict)
    _harvesting: dict[int, Source] = field(default_factory=dict)
    _last_batch: dict = field(default_factory=dict)
    _stored: int = 0
    _beat_at: float = -1e9

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _load_sources(self) -> list[Source]:
        sources = Source.objects.select_related("connection").filter(enabled=True)
        if self.source_names:
            sources = sources.filter(name__in=self.source_names)
        return list(sources)

    async def run(self) -> None:
        self._stop = asyncio.Event()
        log.info("harvester started")
        db_failures = 0
        indexer = BacklogIndexer().start() if self.index_search else None
        try:
            while not self.stopping:
                try:
                    received = await self.run_once()
                    db_failures = 0
                except (DatabaseError, *DB_OUTAGES) as exc:
                    # The database is down: nothing was acked (the sink failed before the ack).
                    # Drop the broken connection and retry after a backoff instead of exiting.
                    db_failures += 1
                    delay = min(self.max_backoff, 0.5 * 2 ** (db_failures - 1))
                    log.error(
                        "database unavailable (attempt %d); retrying in %.1fs: %s", db_failures, delay, exc
                    )
                    await sync_to_async(close_old_connections_now, thread_sensitive=True)()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                    continue
                if not received and not self.stopping:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.poll_interval)
        finally:
            if indexer is not None:
                await asyncio.to_thread(indexer.stop)
            await self.close()
            with contextlib.suppress(Exception):  # the database may be what stopped us
                await sync_to_async(heartbeat_stopped, thread_sensitive=True)(
                    component="harvester", details=self.holdings()
                )
            log.info("harvester stopped")

    def holdings(self) -> dict:
        """What this replica holds and did, for its heartbeat: the sources it harvests, the
        Kafka partitions it holds per source, its last batch and what it stored since start."""
        partitions: dict[str, list[int]] = {}
        for source in self._harvesting.values():
            state = self._connections.get(source.connection_id)
            held = state.adapter.holdings() if state is not None and state.adapter is not None else {}
            if source.address in held:
                partitions[source.name] = held[source.address]
        return {
            "sources": sorted(source.name for source in self._harvesting.values()),
            "partitions": partitions,
            "last_batch": self._last_batch,
            "stored": self._stored,
        }

    async def _release_unharvested(self, sources: list[Source]) -> None:
        """Give up what an adapter holds for sources this replica no longer harvests (disabled,
        deleted, moved): e.g. leave their Kafka groups, so no partition stays with a replica that
        will not read it."""
        for pk, state in self._connections.items():
            if state.adapter is None:
                continue
            keep = {source.address for source in sources if source.connection_id == pk}
            try:
                await state.adapter.release(keep=keep)
            except Exception:  # noqa: BLE001 - releasing is best effort; the session timeout does it
                log.warning("could not release what connection %s held", pk, exc_info=True)

    async def _beat(self) -> None:
        # checked here too: holdings() walks every source, too much to compute after each pass
        if time.monotonic() - self._beat_at < HARVESTER_BEAT_SECONDS:
            return
        self._beat_at = time.monotonic()
        await sync_to_async(heartbeat_beat, thread_sensitive=True)(
            component="harvester", every=HARVESTER_BEAT_SECONDS, details=self.holdings()
        )

    async def run_once(self) -> int:
        """One round: a pass over every source, up to ``concurrency`` at once per connection;
        returns how many messages were received. A pass in progress when ``stop()`` is called
        finishes its batch; passes not yet started are skipped. A database outage in any pass is
        raised once every pass of the round has ended."""
        sources = await sync_to_async(self._load_sources, thread_sensitive=True)()
        self._harvesting = {source.pk: source for source in sources}
        await self._release_unharvested(sources)
        await self._reconnect_edited(sources)
        await self._beat()

        async def one(source: Source) -> int:
            state = self._connections.setdefault(source.connection_id, _ConnectionState())
            if state.slots is None:
                state.slots = asyncio.Semaphore(max(1, self.concurrency))
            async with state.slots:
                if self.stopping:
                    return 0
                report = await self.harvest_source(source)
            await self._beat()  # a long round still beats (at most every HARVESTER_BEAT_SECONDS)
            return report.received if report is not None else 0

        results = await asyncio.gather(*(one(source) for source in sources), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result  # only a database outage gets here (harvest_source keeps the rest)
        return sum(results)

    def _fingerprint(self, source: Source) -> tuple:
        conn = source.connection
        return (conn.kind, conn.url, conn.username, conn.password_encrypted, conn.updated_at)

    async def _reconnect_edited(self, sources: list[Source]) -> None:
        """Close the adapter of a connection edited since it was opened (before the round's passes
        start, so no pass is using it): the next pass reconnects with the new settings."""
        seen: set[int] = set()
        for source in sources:
            state = self._connections.get(source.connection_id)
            if source.connection_id in seen or state is None:
                continue
            seen.add(source.connection_id)
            if state.adapter is not None and state.fingerprint != self._fingerprint(source):
                await self._drop(state)

    async def _adapter_for(self, source: Source) -> BrokerAdapter | None:
        state = self._connections.setdefault(source.connection_id, _ConnectionState())
        if time.monotonic() < state.retry_at:
            return None
        if state.adapter is None:  # no await from the check to the assignment: one adapter only
            state.adapter = brokers.get_adapter(connection_config(source.connection))
            state.adapter.follow = True  # keep broker-side membership across passes (Kafka groups)
            state.fingerprint = self._fingerprint(source)
        return state.adapter

    async def harvest_source(self, source: Source) -> HarvestReport | None:
        """One pass over ``source``. Whatever fails in it stays with it: the source backs off on
        its own (0.5 s doubling up to ``max_backoff``, reset on success) while the others keep
        their pace. Only a database outage propagates (the caller backs off as a whole)."""
        own = self._sources.setdefault(source.pk, _SourceState())
        if time.monotonic() < own.retry_at:
            return None  # this source failed recently: retry later, not in a tight loop
        try:
            adapter = await self._adapter_for(source)
        except Exception as exc:  # noqa: BLE001 - e.g. settings no adapter accepts
            await sync_to_async(source_record_failure, thread_sensitive=True)(source, exc)
            self._source_failed(source, own, exc)
            return None
        if adapter is None:
            return None  # backing off from this connection
        state = self._connections[source.connection.pk]
        try:
            report = await source_harvest_with(
                adapter, source=source, limit=self.pass_limit, idle_write_every=IDLE_WRITE_SECONDS
            )
        except DB_OUTAGES:
            raise
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the harvester itself is being cancelled
            # the client cancelled this pass's pending calls: its connection was closed under it
            # (another pass of the round dropped it after a broker failure); retry later
            self._source_failed(source, own, BrokerError("the broker connection was closed during the pass"))
            return None
        except BrokerError as exc:
            self._source_failed(source, own, exc)
            # a transient error may be this source's alone (an exclusive queue, a busy group):
            # the connection backs off too only when the broker itself is unhealthy
            if not await self._healthy(adapter):
                if exc.permanent:  # e.g. refused credentials: the source waits the longest already
                    await self._observe(source, ok=False, error=str(exc))
                elif state.adapter is adapter:  # not yet dropped by a concurrent pass's failure
                    await self._on_failure(source, state, exc)
            return None
        except Exception as exc:  # noqa: BLE001 - one source's failure must not stop the others
            self._source_failed(source, own, exc)  # recorded on the source by source_harvest_with
            return None
        if state.failures:
            log.info("connection %s recovered", source.connection.name)
        await self._observe(source, ok=True)  # a pass worked: the connection is healthy
        state.failures = 0
        if own.failures:
            log.info("source %s recovered after %d failed pass(es)", source.name, own.failures)
        own.failures, own.retry_at = 0, 0.0
        self.reports.append(report)
        del self.reports[:-100]
        if report.received:
            self._last_batch = {
                "source": source.name,
                "at": datetime.now(UTC).isoformat(),
                "received": report.received,
                "stored": report.inserted,
            }
            self._stored += report.inserted
        if report.inserted:
            log.info("%s: stored %d new dead letter(s)", source.name, report.inserted)
        return report

    async def _observe(self, source: Source, *, ok: bool, error: str = "") -> None:
        """Record what this pass saw on the source's connection (rate-limited: no thread hop
        when nothing would be written)."""
        if connection_health.observe_due(source.connection_id, ok, "" if ok else error):
            await sync_to_async(connection_health.connection_observe, thread_sensitive=True)(
                connection_id=source.connection_id, ok=ok, by=connection_health.HARVESTER, error=error
            )

    async def _healthy(self, adapter: BrokerAdapter) -> bool:
        try:
            return (await adapter.health()).ok
        except Exception:  # noqa: BLE001 - health() never raises by contract; be safe anyway
            log.debug("health check failed", exc_info=True)
            return False

    def _source_failed(self, source: Source, own: _SourceState, exc: Exception) -> None:
        own.failures += 1
        permanent = isinstance(exc, BrokerError) and exc.permanent
        # a permanent error cannot pass by itself: wait the longest at once
        delay = self.max_backoff if permanent else min(self.max_backoff, 0.5 * 2 ** (own.failures - 1))
        own.retry_at = time.monotonic() + delay
        if isinstance(exc, BrokerError):
            log.warning(
                "source %s: harvest failed %s(attempt %d); retrying in %.1fs: %s",
                source.name,
                "permanently " if permanent else "",
                own.failures,
                delay,
                exc,
            )
        else:  # not a broker error: a bug or an input nothing foresaw; the traceback says where
            log.error(
                "source %s: harvest failed (attempt %d); retrying in %.1fs: %s",
                source.name,
                own.failures,
                delay,
                failure_text(exc),
                exc_info=exc,
            )

    async def _on_failure(self, source: Source, state: _ConnectionState, exc: BrokerError) -> None:
        state.failures += 1
        delay = min(self.max_backoff, 0.5 * 2 ** (state.failures - 1))
        state.retry_at = time.monotonic() + delay
        log.warning(
            "connection %s: harvest of %s failed (attempt %d); reconnecting in %.1fs: %s",
            source.connection.name,
            source.name,
            state.failures,
            delay,
            exc,
        )
        await self._observe(source, ok=False, error=str(exc))
        await self._drop(state)

    async def _drop(self, state: _ConnectionState) -> None:
        adapter, state.adapter = state.adapter, None
        if adapter is not None:
            try:
                await adapter.close()
            except Exception:  # noqa: BLE001 - closing a broken connection must not stop the loop
                log.debug("closing adapter failed", exc_info=True)

    async def close(self) -> None:
        for state in self._connections.values():
            await self._drop(state)
