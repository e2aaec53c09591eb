"""The database ceiling, measured in the throughput run's window: what PostgreSQL alone absorbs of
the work harvest and redrive give it, with no broker and no Python per message.

* store: ``BENCH_N`` ~1 KiB dead letters (the rows :mod:`bench.table` builds, status NEW, one
  error group per failure kind) COPYed as the harvest stores them: the body, the state row (list
  indexes, tally triggers, foreign keys) and the search backlog row, in batches of the harvest
  batch size, one commit each (GIN pending lists flushed at the end of each pass and counted);
* search index: the same rows moved from the backlog into the trigram-indexed search table by
  the indexer's own statement (``dlqadmin.search_sql.INDEX_BACKLOG``), off the harvest path;
* status update: the same rows set QUEUED, then REDRIVEN (as job creation and the worker's
  record step do), in batches of the redrive batch size, one commit each.

Afterwards the rows, their source and groups are deleted and the tables are vacuumed, so the
later measurements see the tables they would have seen without this one.
"""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from django.conf import settings
from django.utils import timezone

from dlqadmin import search_sql
from dlqadmin.models import Connection, DeadLetter, DeadLetterKey, DeadLetterState, DeadLetterStatus, Source
from dlqadmin.services.search import INDEX_BATCH

from . import data, table
from .config import BenchConfig
from .report import Metric

LOCK_TIMEOUT = "10s"


@dataclass
class Pass:
    """One measured pass over the rows: seconds in the statements and in the COMMITs."""

    rows: int = 0
    work: float = 0.0
    commit: float = 0.0

    @property
    def seconds(self) -> float:
        return self.work + self.commit

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def us_per_row(self, *, commits: bool = True) -> float:
        return (self.seconds if commits else self.work) / max(self.rows, 1) * 1e6


@dataclass
class Ceiling:
    n: int
    store_batch: int
    update_batch: int
    table_rows: int = 0
    indexes: int = 0
    triggers: int = 0
    store: Pass = field(default_factory=Pass)
    index: Pass = field(default_factory=Pass)
    update: Pass = field(default_factory=Pass)
    cleanup_seconds: float = 0.0


@dataclass
class Batch:
    ids: list[int]
    bodies: list[list]
    states: list[list]
    keys: list[list]


def _batches(source, groups: dict, count: int, size: int) -> list[Batch]:
    """``count`` freshly harvested dead letters in batches, encoded for COPY (built before any
    timing), with ids from the real sequence."""
    rng, now = random.Random(11), timezone.now()
    body, state, key = (table.copy_layout(m) for m in (DeadLetter, DeadLetterState, DeadLetterKey))
    first, out = table.reserve_ids(count), []
    for start in range(0, count, size):
        batch = Batch([], [], [], [])
        for n in range(start, min(start + size, count)):
            kind = data.failure_kind(rng)
            values = table.row(n, source, now, rng, kind=kind, group_id=groups[(source.pk, kind)])
            values.update(
                status=DeadLetterStatus.NEW, redrive_count=0, last_redriven_at=None, harvested_at=now
            )
            values = table.with_ids(values, first + n)
            batch.ids.append(first + n)
            batch.bodies.append(body.values(values))
            batch.states.append(state.values(values))
            batch.keys.append(key.values(values))
        out.append(batch)
    return out


def _flush_gin(pg: psycopg.Connection) -> None:
    """Move every GIN index's pending list into the index proper. GIN defers part of each insert
    to the next overflow of that list (or to VACUUM): flushed before a pass (not timed) and at
    its end (timed), a pass pays for exactly its own index entries."""
    pg.execute(
        "SELECT gin_clean_pending_list(x.indexrelid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_am a ON a.oid = i.relam WHERE x.indrelid = ANY(%s::regclass[]) AND a.amname = 'gin' "
        "AND i.relkind = 'i'",  # a partitioned table's index holds nothing: its partitions' do
        [table.storage_tables()],
    )


@contextmanager
def _timed(pg: psycopg.Connection, done: Pass):
    """Add the block's seconds to ``done.work``, then COMMIT (timed into ``done.commit``)."""
    began = time.perf_counter()
    yield
    done.work += time.perf_counter() - began
    began = time.perf_counter()
    pg.commit()
    done.commit += time.perf_counter() - began


def _store(pg: psycopg.Connection, batches: list[Batch]) -> Pass:
    body, state, key = (table.copy_layout(m) for m in (DeadLetter, DeadLetterState, DeadLetterKey))
    done = Pass(rows=sum(len(b.ids) for b in batches))
    _flush_gin(pg)
    pg.commit()
    for batch in batches:
        with _timed(pg, done), pg.cursor() as cursor:
            for layout, rows in ((key, batch.keys), (body, batch.bodies), (state, batch.states)):
                with cursor.copy(layout.statement) as copy:
                    copy.set_types(layout.types)
                    for values in rows:
                        copy.write_row(values)
            cursor.execute(
                f"INSERT INTO {search_sql.BACKLOG} (dead_letter_id) SELECT unnest(%s::bigint[])", [batch.ids]
            )
    with _timed(pg, done):
        _flush_gin(pg)
    return done


def _index(pg: psycopg.Connection, rows: int) -> Pass:
    """The indexer's statement until the backlog is empty (other backlog rows, if any, count)."""
    done = Pass(rows=0)
    while True:
        with _timed(pg, done):
            indexed = pg.execute(search_sql.INDEX_BACKLOG, {"limit": INDEX_BATCH}).rowcount
        done.rows += indexed
        if indexed < INDEX_BATCH:
            break
    with _timed(pg, done):
        _flush_gin(pg)
    return done


def _update(pg: psycopg.Connection, ids: list[int], batch: int) -> Pass:
    """Two status writes per row, like a redrive: QUEUED (claim), then REDRIVEN (record)."""
    name = DeadLetterState._meta.db_table
    statements = [
        (f"UPDATE {name} SET status = %s WHERE id = ANY(%s)", [DeadLetterStatus.QUEUED]),
        (
            f"UPDATE {name} SET status = %s, redrive_count = redrive_count + 1, "
            "last_redriven_at = now() WHERE id = ANY(%s)",
            [DeadLetterStatus.REDRIVEN],
        ),
    ]
    done = Pass(rows=len(ids))
    for statement, params in statements:
        for start in range(0, len(ids), batch):
            with _timed(pg, done):
                pg.execute(statement, [*params, ids[start : start + batch]])
    return done


def _facts(pg: psycopg.Connection, ceiling: Ceiling) -> None:
    """Fill in the tables' size, index and trigger counts (body, state and search tables)."""
    ceiling.table_rows = pg.execute(f"SELECT count(*) FROM {table.STATES}").fetchone()[0]
    ceiling.indexes = pg.execute(
        "SELECT count(*) FROM pg_index WHERE indrelid = ANY(%s::regclass[])", [table.TABLES]
    ).fetchone()[0]
    ceiling.triggers = pg.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = ANY(%s::regclass[]) AND NOT tgisinternal",
        [table.TABLES],
    ).fetchone()[0]
    pg.commit()


def measure(config: BenchConfig, url: str) -> Ceiling:
    """Measure the ceiling on the bench database at ``url`` (no broker is contacted)."""
    n, redrive_batch = config.n, config.redrive_batch
    ceiling = Ceiling(n=n, store_batch=settings.DLQADMIN_HARVEST_BATCH_SIZE, update_batch=redrive_batch)
    sources = table.make_sources(f"{config.prefix('-')}-db", {"nats": config.nats_url})
    source, groups = sources[0], table.make_groups(sources[:1])
    batches = _batches(source, groups, n, ceiling.store_batch)
    try:
        with psycopg.connect(url) as pg:
            pg.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            _facts(pg, ceiling)
            ceiling.store = _store(pg, batches)
            ceiling.index = _index(pg, n)
            ceiling.update = _update(pg, [pk for b in batches for pk in b.ids], redrive_batch)
    finally:
        began = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as pg:
            ids = "SELECT id FROM dlqadmin_deadletterstate WHERE source_id = %s"
            pg.execute(f"DELETE FROM {search_sql.SEARCH} WHERE dead_letter_id IN ({ids})", [source.pk])
            pg.execute(f"DELETE FROM {search_sql.BACKLOG} WHERE dead_letter_id IN ({ids})", [source.pk])
            pg.execute(f"DELETE FROM {DeadLetter._meta.db_table} WHERE id IN ({ids})", [source.pk])
            pg.execute(f"DELETE FROM {DeadLetterKey._meta.db_table} WHERE source_key = %s", [source.pk])
            pg.execute(f"DELETE FROM {table.STATES} WHERE source_id = %s", [source.pk])
            for name in table.TABLES:
                pg.execute(f"VACUUM {name}")
        Source.objects.filter(connection_id=source.connection_id).delete()  # and their groups
        Connection.objects.filter(pk=source.connection_id).delete()
        ceiling.cleanup_seconds = time.perf_counter() - began
    return ceiling


def metrics(ceiling: Ceiling) -> list[Metric]:
    store, update = ceiling.store, ceiling.update
    where = (
        f"the dead-letter tables ({ceiling.table_rows:,} rows; state, body and search: "
        f"{ceiling.indexes} indexes, {ceiling.triggers} triggers) with their search backlog rows"
    )
    out = [
        Metric(
            "throughput",
            "database: store ceiling",
            f"{store.rate:,.0f} rows/s",
            detail=f"{ceiling.n:,} ~1 KiB dead letters COPYed into {where} in batches of "
            f"{ceiling.store_batch}, one commit each, GIN pending lists flushed at the end: "
            f"{store.us_per_row():.0f} us/row, of which "
            f"{store.commit / max(store.rows, 1) * 1e6:.0f} us committing; rows deleted and the table "
            f"vacuumed afterwards ({ceiling.cleanup_seconds:.1f} s)",
            numbers={
                "rate": store.rate,
                "n": ceiling.n,
                "seconds": store.seconds,
                "commit_seconds": store.commit,
            },
        ),
        Metric(
            "throughput",
            "database: status-update ceiling",
            f"{update.rate:,.0f} msg/s",
            detail=f"the same {ceiling.n:,} rows set QUEUED, then REDRIVEN (two UPDATEs per message) in "
            f"batches of {ceiling.update_batch} on the state table, one commit each: "
            f"{update.us_per_row():.0f} us/message, "
            f"of which {update.commit / max(update.rows, 1) * 1e6:.0f} us committing",
            numbers={
                "rate": update.rate,
                "n": ceiling.n,
                "seconds": update.seconds,
                "commit_seconds": update.commit,
            },
        ),
    ]
    out.append(
        Metric(
            "throughput",
            "database: search index ceiling",
            f"{ceiling.index.rate:,.0f} rows/s",
            detail=f"the same rows moved from the backlog into the trigram-indexed search table by the "
            f"indexer's statement, {INDEX_BATCH} per transaction, off the harvest path: "
            f"{ceiling.index.us_per_row():.0f} us/row",
            numbers={"rate": ceiling.index.rate, "n": ceiling.index.rows, "seconds": ceiling.index.seconds},
        )
    )
    return out
