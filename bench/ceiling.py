"""The database ceiling, measured in the throughput run's window: what PostgreSQL alone absorbs of
the work harvest and redrive give it, with no broker and no Python per message.

* store: ``BENCH_N`` ~1 KiB dead letters (the rows :mod:`bench.table` builds, status NEW, one
  error group per failure kind) COPYed into the real dead-letter table, with every index, the
  tally triggers and the foreign keys, in batches of the harvest batch size, one commit each
  (GIN pending lists flushed at the end of each pass and counted);
* status update: the same rows set QUEUED, then REDRIVEN (as job creation and the worker's
  record step do), in batches of the redrive batch size, one commit each;
* both again without the payload trigram index: dropped inside one transaction that is rolled
  back at the end (so without per-batch commits; the commits are timed apart on the first pass
  and the index's share is computed without them).

Afterwards the rows, their source and groups are deleted and the table is vacuumed, so the later
measurements see the table they would have seen without this one.
"""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from django.conf import settings
from django.utils import timezone

from dlqadmin.models import Connection, DeadLetter, DeadLetterStatus, Source

from . import data, table
from .config import BenchConfig
from .report import Metric

PAYLOAD_INDEX = "deadletter_payload_trgm"  # migration 0008
LOCK_TIMEOUT = "10s"  # never wait forever for the lock DROP INDEX takes


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
    update: Pass = field(default_factory=Pass)
    #: without the payload trigram index (None: the table has no such index)
    store_bare: Pass | None = None
    update_bare: Pass | None = None
    cleanup_seconds: float = 0.0


def _rows(source, groups: dict, layout: table.CopyLayout, first: int, count: int) -> list[list]:
    """``count`` freshly harvested dead letters, encoded for COPY (built before any timing)."""
    rng, now = random.Random(first + 11), timezone.now()
    out = []
    for n in range(first, first + count):
        kind = data.failure_kind(rng)
        values = table.row(n, source, now, rng, kind=kind, group_id=groups[(source.pk, kind)])
        values.update(status=DeadLetterStatus.NEW, redrive_count=0, last_redriven_at=None, harvested_at=now)
        out.append(layout.values(values))
    return out


def _flush_gin(pg: psycopg.Connection) -> None:
    """Move every GIN index's pending list into the index proper. GIN defers part of each insert
    to the next overflow of that list (or to VACUUM): flushed before a pass (not timed) and at
    its end (timed), a pass pays for exactly its own index entries."""
    pg.execute(
        "SELECT gin_clean_pending_list(x.indexrelid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_am a ON a.oid = i.relam WHERE x.indrelid = %s::regclass AND a.amname = 'gin'",
        [DeadLetter._meta.db_table],
    )


@contextmanager
def _timed(pg: psycopg.Connection, done: Pass, *, commit: bool):
    """Add the block's seconds to ``done.work``, then COMMIT if asked (timed into ``done.commit``)."""
    began = time.perf_counter()
    yield
    done.work += time.perf_counter() - began
    if commit:
        began = time.perf_counter()
        pg.commit()
        done.commit += time.perf_counter() - began


def _store(pg: psycopg.Connection, layout: table.CopyLayout, rows: list[list], batch: int, *, commit: bool):
    done = Pass(rows=len(rows))
    _flush_gin(pg)
    if commit:
        pg.commit()
    for start in range(0, len(rows), batch):
        with _timed(pg, done, commit=commit), pg.cursor() as cursor, cursor.copy(layout.statement) as copy:
            copy.set_types(layout.types)
            for values in rows[start : start + batch]:
                copy.write_row(values)
    with _timed(pg, done, commit=commit):
        _flush_gin(pg)
    return done


def _update(pg: psycopg.Connection, ids: list[int], batch: int, *, commit: bool) -> Pass:
    """Two status writes per row, like a redrive: QUEUED (claim), then REDRIVEN (record)."""
    name = DeadLetter._meta.db_table
    statements = [
        (f"UPDATE {name} SET status = %s WHERE id = ANY(%s)", [DeadLetterStatus.QUEUED]),
        (
            f"UPDATE {name} SET status = %s, redrive_count = redrive_count + 1, "
            "last_redriven_at = now() WHERE id = ANY(%s)",
            [DeadLetterStatus.REDRIVEN],
        ),
    ]
    done = Pass(rows=len(ids))
    _flush_gin(pg)
    if commit:
        pg.commit()
    for statement, params in statements:
        for start in range(0, len(ids), batch):
            with _timed(pg, done, commit=commit):
                pg.execute(statement, [*params, ids[start : start + batch]])
    with _timed(pg, done, commit=commit):
        _flush_gin(pg)
    return done


def _ids(pg: psycopg.Connection, source_id: int) -> list[int]:
    name = DeadLetter._meta.db_table
    rows = pg.execute(f"SELECT id FROM {name} WHERE source_id = %s ORDER BY id", [source_id])
    return [pk for (pk,) in rows.fetchall()]


def _facts(pg: psycopg.Connection, ceiling: Ceiling) -> bool:
    """Fill in the table's size, index and trigger counts; True if the payload index exists."""
    name = DeadLetter._meta.db_table
    ceiling.table_rows = pg.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
    ceiling.indexes = pg.execute(
        "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", [name]
    ).fetchone()[0]
    ceiling.triggers = pg.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", [name]
    ).fetchone()[0]
    has_index = pg.execute("SELECT to_regclass(%s) IS NOT NULL", [PAYLOAD_INDEX]).fetchone()[0]
    pg.commit()
    return has_index


def measure(config: BenchConfig, url: str) -> Ceiling:
    """Measure the ceiling on the bench database at ``url`` (no broker is contacted)."""
    n, redrive_batch = config.n, config.redrive_batch
    ceiling = Ceiling(n=n, store_batch=settings.DLQADMIN_HARVEST_BATCH_SIZE, update_batch=redrive_batch)
    sources = table.make_sources(f"{config.prefix('-')}-db", {"nats": config.nats_url})
    source, groups = sources[0], table.make_groups(sources[:1])
    layout = table.copy_layout()
    name = DeadLetter._meta.db_table
    try:
        with psycopg.connect(url) as pg:
            pg.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            has_index = _facts(pg, ceiling)
            rows = _rows(source, groups, layout, 0, n)
            ceiling.store = _store(pg, layout, rows, ceiling.store_batch, commit=True)
            ceiling.update = _update(pg, _ids(pg, source.pk), redrive_batch, commit=True)
            if has_index:
                rows = _rows(source, groups, layout, n, n)  # new positions: the first rows still exist
                pg.execute(f"DROP INDEX {PAYLOAD_INDEX}")
                try:
                    ceiling.store_bare = _store(pg, layout, rows, ceiling.store_batch, commit=False)
                    ceiling.update_bare = _update(pg, _ids(pg, source.pk)[n:], redrive_batch, commit=False)
                finally:
                    pg.rollback()  # the index is back, untouched
    finally:
        began = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute(f"DELETE FROM {name} WHERE source_id = %s", [source.pk])
            pg.execute(f"VACUUM {name}")
        Source.objects.filter(connection_id=source.connection_id).delete()  # and their groups
        Connection.objects.filter(pk=source.connection_id).delete()
        ceiling.cleanup_seconds = time.perf_counter() - began
    return ceiling


def metrics(ceiling: Ceiling) -> list[Metric]:
    store, update = ceiling.store, ceiling.update
    where = (
        f"the dead-letter table ({ceiling.table_rows:,} rows, {ceiling.indexes} indexes, "
        f"{ceiling.triggers} triggers)"
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
            f"batches of {ceiling.update_batch}, one commit each, GIN pending lists flushed at the end: "
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
    for label, full, bare, unit in (
        ("store ceiling", store, ceiling.store_bare, "rows/s"),
        ("status-update ceiling", update, ceiling.update_bare, "msg/s"),
    ):
        if bare is None:
            continue
        share = 1 - bare.work / full.work if full.work > 0 else 0.0
        out.append(
            Metric(
                "throughput",
                f"database: {label} without the payload trigram index",
                f"{bare.rate:,.0f} {unit}",
                detail=f"as above with {PAYLOAD_INDEX} dropped inside one transaction, rolled back "
                f"afterwards (no per-batch commits): {bare.us_per_row():.0f} us against "
                f"{full.us_per_row(commits=False):.0f} us without commits, so the index is "
                f"{share:.0%} of the database time",
                numbers={"rate": bare.rate, "n": ceiling.n, "seconds": bare.seconds, "index_share": share},
            )
        )
    return out
