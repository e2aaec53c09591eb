"""Large dead-letter tables, written with PostgreSQL COPY (the latency table and the rows of the
memory run). Rows look harvested: typed headers, origin columns per broker kind, skewed failure
kinds, one error group per (source, failure kind), a status mix and 30 days of failure times."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from dlqadmin import search_sql
from dlqadmin.models import Connection, DeadLetter, DeadLetterKey, DeadLetterState, ErrorGroup, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.grouping import fingerprint, normalise_message
from dlqadmin.services.partitions import partitions_ensure

from . import data

STATES = DeadLetterState._meta.db_table
#: the tables a dead letter is stored in (bench tables are COPYed into all four, then indexed); the
#: body is partitioned (:func:`storage_tables` names its partitions too)
TABLES = [STATES, DeadLetter._meta.db_table, DeadLetterKey._meta.db_table, search_sql.SEARCH]
SOURCES_PER_KIND = 4
DAYS = 30
#: status mix of a table that has been in use for a month
STATUSES = [("new", 62), ("redriven", 18), ("resolved", 9), ("failed", 4), ("discarded", 4), ("parked", 3)]


@dataclass
class Fixture:
    """What the latency cases need to know about the generated table."""

    sources: list[Source] = field(default_factory=list)
    groups: dict[tuple[int, int], int] = field(default_factory=dict)
    rows: int = 0
    seconds: float = 0.0
    first: datetime | None = None
    last: datetime | None = None


def make_sources(prefix: str, urls: dict[str, str]) -> list[Source]:
    """Connections (one per kind) and SOURCES_PER_KIND sources each; no broker is contacted."""
    sources = []
    for kind, url in urls.items():
        conn = connection_create(name=f"{prefix}-{kind}", kind=kind, url=url)
        mode = {"rabbitmq": "queue", "kafka": "topic", "nats": "dlq_stream"}[kind]
        for i in range(SOURCES_PER_KIND):
            address = f"{prefix}.{kind}.{i}.dlq" if kind != "nats" else f"{prefix.upper()}_{i}_DLQ"
            sources.append(
                Source.objects.create(
                    connection=conn, name=f"{prefix}-{kind}-{i}", mode=mode, address=address
                )
            )
    return sources


def make_groups(sources: list[Source]) -> dict[tuple[int, int], int]:
    now = timezone.now()
    made: dict[tuple[int, int], ErrorGroup] = {}
    for source in sources:
        for index, (error_class, template) in enumerate(data.FAILURES):
            message = template.format(n=1, m=1)
            fp, pattern = fingerprint(
                source_id=source.pk, error_class=error_class, message=message, reason=""
            )
            made[(source.pk, index)] = ErrorGroup(
                fingerprint=fp,
                source=source,
                error_class=error_class,
                message_pattern=pattern or normalise_message(message),
                sample_message=message,
                first_seen=now - timedelta(days=DAYS),
                last_seen=now,
            )
    ErrorGroup.objects.bulk_create(made.values())
    return {key: group.pk for key, group in made.items()}


def _origin(source: Source, n: int) -> dict:
    kind = source.connection.kind
    if kind == "rabbitmq":
        return {
            "origin_exchange": "orders",
            "origin_routing_key": "order.created",
            "origin_queue": source.address.removesuffix(".dlq") + ".q",
            "origin_extra": {"routing_keys": ["order.created"]},
            "reason": "rejected",
        }
    if kind == "kafka":
        return {
            "origin_topic": source.address.removesuffix(".dlq"),
            "origin_partition": n % 3,
            "origin_offset": n,
            "origin_extra": {"consumer_group": "orders-svc"},
            "key": data.order_id(n).encode(),
        }
    return {
        "origin_stream": "ORDERS",
        "origin_subject": "orders.created",
        "origin_seq": n + 1,
        "origin_extra": {"consumer": "orders-worker", "deliveries": 3},
        "reason": "dead_letter",
    }


def row(
    n: int,
    source: Source,
    failed_at: datetime,
    rng: random.Random,
    *,
    kind: int = 0,
    group_id: int | None = None,
) -> dict:
    """One dead letter as a {field name: value} dict (fields not named keep their defaults)."""
    error_class, message = data.failure(n, rng, kind)
    payload = data.payload(n)
    status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
    return {
        "source_id": source.pk,
        "position": f"bench/{source.pk}/{n}",
        "payload": payload,
        "payload_size": len(payload),
        "headers": [
            ["tenant", {"t": "str", "v": data.tenant(n)}],
            ["x-request-id", {"t": "str", "v": f"req-{n:08d}"}],
            ["content-type", {"t": "str", "v": "application/json"}],
        ],
        "properties": {"content_type": "application/json", "message_id": f"m-{n}"},
        "error_class": error_class,
        "error_message": message,
        "stacktrace": f"{error_class}: {message}\n\tat com.acme.orders.Handler.handle(Handler.java:42)\n",
        "failed_at": failed_at,
        "harvested_at": failed_at + timedelta(seconds=1),
        "status": status,
        "redrive_count": 1 if status == "redriven" else 0,
        "last_redriven_at": failed_at + timedelta(minutes=5) if status == "redriven" else None,
        "error_group_id": group_id,
        **_origin(source, n),
    }


def _encode(value):
    return Jsonb(value) if isinstance(value, dict | list) else value


@dataclass(frozen=True)
class CopyLayout:
    """How a dead-letter row dict becomes one binary COPY row of one table (the state or the
    body): the statement, the column types (from the catalog) and, per column, the field whose
    value (or default) goes there."""

    statement: str
    types: list[int]
    fields: list
    defaults: dict

    def values(self, row: dict) -> list:
        merged = {**self.defaults, **row}
        return [_encode(merged[f.attname]) for f in self.fields]


def copy_layout(model=DeadLetter) -> CopyLayout:
    """The COPY of ``model``'s own table (``DeadLetterState``, the body ``DeadLetter`` or
    ``DeadLetterKey``), ids included: rows get theirs from :func:`reserve_ids`."""
    fields = list(model._meta.local_concrete_fields)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT atttypid::int, attname FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [model._meta.db_table],
        )
        types = {name: kind for kind, name in cursor.fetchall()}
    return CopyLayout(
        statement=f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)",
        types=[types[f.column] for f in fields],
        fields=fields,
        defaults={f.attname: f.get_default() for f in fields},
    )


def reserve_ids(count: int) -> int:
    """Take ``count`` ids from the dead letters' sequence, their partitions created (and a spare
    one, as the harvester keeps it); returns the first."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [STATES])
        (sequence,) = cursor.fetchone()
        cursor.execute("SELECT setval(%s, nextval(%s) + %s) - %s", [sequence, sequence, count - 1, count - 1])
        first = cursor.fetchone()[0]
    partitions_ensure()
    return first


def storage_tables() -> list[str]:
    """:data:`TABLES` and the partitions of the body (the tables that hold rows and indexes)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = %s::regclass",
            [DeadLetter._meta.db_table],
        )
        return TABLES + [name for (name,) in cursor.fetchall()]


def analyze() -> None:
    """``ANALYZE`` every storage table and body partition (what autovacuum does within a minute
    or so). Right after a COPY, a new partition still has no statistics (``reltuples`` 0): the
    planner then scans the whole partition once per joined row (a 50 000-row redrive's claim
    query ran for over 8 minutes)."""
    with connection.cursor() as cursor:
        for name in storage_tables():
            cursor.execute(f"ANALYZE {connection.ops.quote_name(name)}")


def with_ids(row: dict, pk: int) -> dict:
    """``row`` (from :func:`row`) as the tables need it: its id, and the source's id again for
    the key's unique position (and the body)."""
    return {**row, "id": pk, "state_ptr_id": pk, "dead_letter_id": pk, "source_key": row["source_id"]}


def copy_rows(rows, count: int, *, index: bool = True) -> float:
    """COPY ``count`` row dicts (an iterable) into the dead-letter tables (bodies streamed, the
    narrow state and key rows kept until the bodies are in), then their search text (``index``),
    as the indexer would have written it; returns seconds."""
    start = time.perf_counter()
    body, state, key = copy_layout(DeadLetter), copy_layout(DeadLetterState), copy_layout(DeadLetterKey)
    first, states, keys = reserve_ids(count), [], []
    with transaction.atomic(), connection.cursor() as cursor:  # the body's key to its state: at commit
        with cursor.copy(body.statement) as copy:
            copy.set_types(body.types)
            for pk, values in enumerate(rows, start=first):
                values = with_ids(values, pk)
                copy.write_row(body.values(values))
                states.append(state.values(values))
                keys.append(key.values(values))
        for layout, narrow in ((state, states), (key, keys)):
            with cursor.copy(layout.statement) as copy:
                copy.set_types(layout.types)
                for values in narrow:
                    copy.write_row(values)
        if index:
            cursor.execute(search_sql.BACKFILL + " WHERE d.id >= %s", [first])
    return time.perf_counter() - start


def _without_indexes(table: str):
    """Drop the table's secondary indexes and its foreign-key / unique constraints; returns the
    statements that recreate them (COPY into a bare table, then one index build each, is several
    times faster than maintaining every index row by row)."""
    statements, drops = [], []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('f', 'u')",
            [table],
        )
        constraints = cursor.fetchall()
        cursor.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass AND NOT x.indisprimary "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
            [table],
        )
        indexes = cursor.fetchall()
    quoted = connection.ops.quote_name(table)
    for name, definition in constraints:
        drops.append(f"ALTER TABLE {quoted} DROP CONSTRAINT {connection.ops.quote_name(name)}")
        statements.append(
            f"ALTER TABLE {quoted} ADD CONSTRAINT {connection.ops.quote_name(name)} {definition}"
        )
    for name, definition in indexes:
        drops.append(f"DROP INDEX {connection.ops.quote_name(name)}")
        # a partitioned table's index reads back as "ON ONLY": rebuilt, it must reach the partitions
        statements.insert(0, definition.replace(" ON ONLY ", " ON ", 1))
    with connection.cursor() as cursor:
        for statement in drops:
            cursor.execute(statement)
    return statements


def populate(*, prefix: str, urls: dict[str, str], count: int, seed: int = 8) -> Fixture:
    """Sources, error groups and ``count`` dead letters spread over the last DAYS days."""
    fixture = Fixture(sources=make_sources(prefix, urls))
    fixture.groups = make_groups(fixture.sources)
    rng = random.Random(seed)
    now = timezone.now()
    fixture.first = start = now - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / max(count, 1)
    weights = [1 + i for i in range(len(fixture.sources))]  # some sources are much busier

    def rows():
        for n in range(count):
            source = rng.choices(fixture.sources, weights)[0]
            kind = data.failure_kind(rng)
            yield row(n, source, start + step * n, rng, kind=kind, group_id=fixture.groups[(source.pk, kind)])

    start_copy = time.perf_counter()
    recreate = [s for table in TABLES for s in _without_indexes(table)]
    copy_rows(rows(), count)
    with connection.cursor() as cursor:
        for statement in recreate:
            cursor.execute(statement)
    fixture.seconds = time.perf_counter() - start_copy
    fixture.rows, fixture.last = count, start + step * count
    _finish(fixture)
    return fixture


def _finish(fixture: Fixture) -> None:
    """Group counters from the rows, then VACUUM ANALYZE (what autovacuum would have done)."""
    group_table = connection.ops.quote_name(ErrorGroup._meta.db_table)
    state_table = connection.ops.quote_name(STATES)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {group_table} g SET count = s.n, first_seen = s.first, last_seen = s.last "
            f"FROM (SELECT error_group_id, count(*) n, min(failed_at) first, max(failed_at) last "
            f"FROM {state_table} GROUP BY error_group_id) s WHERE g.id = s.error_group_id"
        )
        for table in TABLES:
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(table)}")
        cursor.execute(f"ANALYZE {group_table}")


def bench_connections() -> list[Connection]:
    return list(Connection.objects.all())
