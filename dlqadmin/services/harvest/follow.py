"""The long-running harvester behind ``manage.py harvest --follow``.

One asyncio loop watches every enabled source: it harvests each in bounded passes (so a stop
request is honoured within one pass), keeps one open adapter per connection, and backs off
exponentially from a broker that is down while recording the failure on the connection and
the source. Any other failure of one source (a permanent broker error, a bug, an input nothing
foresaw) is recorded on that source, which then backs off on its own: one bad source never
stops the others. ``stop()`` (wired to SIGTERM/SIGINT) lets the pass in progress finish its batch:
a batch is always committed to the database before the broker acks it, so nothing is lost.

Several harvesters may run at once: the brokers share work (RabbitMQ competing consumers, a
Kafka consumer group, a NATS durable consumer) and the UNIQUE position keeps rows single.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connections

import brokers
from brokers.base import BrokerAdapter, BrokerError, Health
from dlqadmin.models import Source
from dlqadmin.services.connections import connection_config, connection_record_health
from dlqadmin.services.harvest.store import (
    DB_OUTAGES,
    HarvestReport,
    failure_text,
    source_harvest_with,
    source_record_failure,
)
from dlqadmin.services.heartbeat import heartbeat_beat
from dlqadmin.services.search import BacklogIndexer

log = logging.getLogger("dlqadmin.services.harvester")  # the pre-package name, kept for logging configs


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
    max_backoff: float = 30.0
    #: run the search indexer thread (dlqadmin.services.search) beside the harvest loop
    index_search: bool = True
    reports: list[HarvestReport] = field(default_factory=list)
    _stop: asyncio.Event | None = None
    _connections: dict[int, _ConnectionState] = field(default_factory=dict)
    _sources: dict[int, _SourceState] = field(default_factory=dict)

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
            log.info("harvester stopped")

    async def run_once(self) -> int:
        """One pass over every source; returns how many messages were received."""
        received = 0
        await sync_to_async(heartbeat_beat, thread_sensitive=True)(component="harvester")
        for source in await sync_to_async(self._load_sources, thread_sensitive=True)():
            if self.stopping:
                break
            report = await self.harvest_source(source)
            if report is not None:
                received += report.received
        return received

    async def _adapter_for(self, source: Source) -> BrokerAdapter | None:
        conn = source.connection
        state = self._connections.setdefault(conn.pk, _ConnectionState())
        fingerprint = (conn.kind, conn.url, conn.username, conn.password_encrypted, conn.updated_at)
        if state.adapter is not None and state.fingerprint != fingerprint:
            await self._drop(state)  # the connection was edited: reconnect with the new settings
        if time.monotonic() < state.retry_at:
            return None
        if state.adapter is None:
            state.adapter = brokers.get_adapter(connection_config(conn))
            state.fingerprint = fingerprint
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
            report = await source_harvest_with(adapter, source=source, limit=self.pass_limit)
        except DB_OUTAGES:
            raise
        except BrokerError as exc:
            self._source_failed(source, own, exc)
            # a transient error may be this source's alone (an exclusive queue, a busy group):
            # the connection backs off too only when the broker itself is unhealthy
            if not exc.permanent and not await self._healthy(adapter):
                await self._on_failure(source, state, exc)
            return None
        except Exception as exc:  # noqa: BLE001 - one source's failure must not stop the others
            self._source_failed(source, own, exc)  # recorded on the source by source_harvest_with
            return None
        if state.failures:
            log.info("connection %s recovered", source.connection.name)
            await sync_to_async(connection_record_health, thread_sensitive=True)(
                connection=source.connection, health=Health(ok=True)
            )
        state.failures = 0
        if own.failures:
            log.info("source %s recovered after %d failed pass(es)", source.name, own.failures)
        own.failures, own.retry_at = 0, 0.0
        self.reports.append(report)
        del self.reports[:-100]
        if report.inserted:
            log.info("%s: stored %d new dead letter(s)", source.name, report.inserted)
        return report

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
        await sync_to_async(connection_record_health, thread_sensitive=True)(
            connection=source.connection, health=Health(ok=False, error=str(exc))
        )
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
