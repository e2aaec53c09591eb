"""Harvest: read dead letters from a source's broker and store them in the database.

``dead_letters_store`` is the sink the adapters call with each batch: it commits the batch
(idempotently: the (source, position) pair is UNIQUE in the key table) before the adapter acks
anything on the broker. ``source_harvest`` runs one harvest pass for one source.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field

import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
    transaction,
)
from django.db.models import F
from django.utils import timezone

import brokers
from brokers.base import BrokerAdapter, BrokerError, HarvestedMessage
from dlqadmin import live
from dlqadmin.models import (
    DeadLetter,
    DeadLetterKey,
    DeadLetterState,
    DeadLetterStatus,
    SearchBacklog,
    Source,
)
from dlqadmin.services import alerts, partitions
from dlqadmin.services.connections import connection_config, source_spec
from dlqadmin.services.grouping import Failure, error_groups_record

from .boundary import fitted, minimal
from .prepare import harvest_preparing

log = logging.getLogger("dlqadmin.services.harvest")  # the pre-package name, kept for logging configs

#: times a batch is stored again after a deadlock with another replica
_DEADLOCK_RETRIES = 5


@dataclass
class StoreResult:
    inserted: int = 0
    duplicates: int = 0
    inserted_ids: list[int] = field(default_factory=list)


def _text(value: str, limit: int | None = None) -> str:
    """Postgres text cannot hold NUL; the exact bytes stay in the headers column."""
    value = (value or "").replace("\x00", "\ufffd")
    return value[:limit] if limit else value


def _json_safe(value):
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN: not valid JSON for Postgres
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 1000:
        return str(value)  # beyond Python's int -> str digit limit for JSON
    if value is not None and not isinstance(value, bool | int | float):
        return _text(str(value))  # a type JSON has no room for (Decimal, datetime, bytes ...)
    return value


def _json(value) -> str:
    """JSON text for a jsonb column. Postgres refuses NUL (``\\u0000``) and NaN in jsonb, so a
    value holding either goes through :func:`_json_safe` first; the rest is dumped as it is."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (ValueError, TypeError):  # NaN, an infinity, a huge int or a type JSON cannot hold
        return json.dumps(_json_safe(value))
    return json.dumps(_json_safe(value)) if "\\u0000" in text else text


def _origin_extra(origin) -> dict:
    return {**origin.extra, "routing_keys": origin.routing_keys} if origin.routing_keys else origin.extra


#: the columns :func:`_values` fills, in its order; every other column gets its model default.
_FILLED = (
    "position",
    "payload",
    "payload_available",
    "payload_size",
    "key",
    "headers",
    "properties",
    "origin_exchange",
    "origin_routing_key",
    "origin_queue",
    "origin_topic",
    "origin_partition",
    "origin_offset",
    "origin_stream",
    "origin_subject",
    "origin_seq",
    "origin_extra",
    "reason",
    "error_class",
    "error_message",
    "stacktrace",
    "failed_at",
    "retry_count",
    "status",
    "read_notes",
)
#: the same per batch: the source, the harvest time, the error group (per failure, passed in)
_PER_BATCH = ("source_id", "harvested_at", "error_group_id")


def _values(source: Source, messages: list[HarvestedMessage], failures: list[Failure]) -> list[tuple]:
    """One tuple per message in :data:`_FILLED` order, straight from the dataclasses (no model
    instances, no per-field ``get_db_prep_save``): text with NUL replaced and cut to the column's
    length; jsonb values as Python objects. ``failures`` (parallel to ``messages``) already hold
    the cleaned error texts and ``failed_at``."""
    max_redrives = source.max_redrives
    new, parked = DeadLetterStatus.NEW.value, DeadLetterStatus.PARKED.value
    rows = []
    for m, f in zip(messages, failures, strict=True):
        o = fitted(m).origin
        payload = m.payload if type(m.payload) is bytes else bytes(m.payload)
        rows.append(
            (
                _position(m),
                payload,
                m.payload_available,
                len(payload),
                m.key,
                m.headers,
                m.properties,
                _text(o.exchange, 255),
                _text(o.routing_key, 255),
                _text(o.queue, 255),
                _text(o.topic, 255),
                o.partition,
                o.offset,
                _text(o.stream, 255),
                _text(o.subject, 500),
                o.seq,
                _origin_extra(o),
                f.reason,
                f.error_class,
                f.message,
                _text(m.stacktrace),
                f.failed_at,
                m.retry_count,
                parked if m.retry_count >= max_redrives > 0 else new,
                m.read_notes,
            )
        )
    return rows


#: jsonb columns among :data:`_FILLED` whose values may hold NUL or NaN (the header codec's
#: nodes never do)
_JSON_CLEANED = ("properties", "origin_extra", "read_notes")


def _columns(rows: list[tuple]) -> list[list]:
    """The column arrays of ``rows`` (from :func:`_values`), jsonb as JSON text."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    columns[_FILLED.index("headers")] = [json.dumps(v) for v in columns[_FILLED.index("headers")]]
    for name in _JSON_CLEANED:
        i = _FILLED.index(name)
        columns[i] = [_json(v) for v in columns[i]]
    return columns


def _insert(
    source: Source, messages: list[HarvestedMessage], failures: list[Failure], groups: list, now
) -> list[tuple[int, str]]:
    """Insert ``messages`` (their error groups in ``groups``) whose position is not stored yet;
    returns ``(id, position)`` of the new rows, in batch order. Positions must be unique.

    One statement, one round trip: ids drawn from the state table's sequence, the key rows
    inserted with ``ON CONFLICT DO NOTHING`` (the key table's (source, position) UNIQUE index
    finds a stored position), then the bodies (into their id-range partition), the state rows and
    the search backlog rows of the keys that went in. Each
    table's columns come as one binary array parameter (``INSERT ... SELECT FROM unnest()``), on a
    server-side-binding cursor of Django's own connection (same transaction), the arrays built
    straight from the dataclasses: ``bulk_create`` compiles ~30 placeholders per row and
    Django's client-side-binding cursor then quotes every 1 KiB payload into the SQL text in
    Python, several times what the database spends on the insert."""
    conn = connections[DEFAULT_DB_ALIAS]  # resolved once: each proxy access is a context lookup
    if not messages:
        return []
    rows = _values(source, messages, failures)
    n = len(messages)
    values = dict(zip(_FILLED, _columns(rows), strict=True))
    values.update(
        source_id=[source.pk] * n,
        source_key=[source.pk] * n,
        harvested_at=[now] * n,
        error_group_id=[g.pk for g in groups],
    )
    quote = conn.ops.quote_name
    key_names, key_select, key_arrays, key_params = _unnest(DeadLetterKey, values, n, conn)
    body_names, body_select, body_arrays, body_params = _unnest(DeadLetter, values, n, conn)
    state_names, state_select, state_arrays, state_params = _unnest(DeadLetterState, values, n, conn)
    key, body = quote(DeadLetterKey._meta.db_table), quote(DeadLetter._meta.db_table)
    state, backlog = quote(DeadLetterState._meta.db_table), quote(SearchBacklog._meta.db_table)
    sequence = f"'{DeadLetterState._meta.db_table}'"
    sql = (
        f"WITH ids AS (SELECT nextval(pg_get_serial_sequence({sequence}, 'id')) AS id, "  # noqa: S608
        f"ord FROM generate_series(1, {n}) AS ord), "
        f"keys AS (INSERT INTO {key} (dead_letter_id, {key_names}) "
        f"SELECT ids.id, {key_select} FROM unnest({key_arrays}) WITH ORDINALITY "
        f"AS r({_aliases(key_arrays)}, ord) JOIN ids ON ids.ord = r.ord "
        "ON CONFLICT (source_key, position) DO NOTHING RETURNING dead_letter_id AS id, position), "
        f"body AS (INSERT INTO {body} (id, {body_names}) "
        f"SELECT ids.id, {body_select} FROM unnest({body_arrays}) WITH ORDINALITY "
        f"AS r({_aliases(body_arrays)}, ord) JOIN ids ON ids.ord = r.ord "
        "WHERE ids.id IN (SELECT id FROM keys)), "
        f"state AS (INSERT INTO {state} (id, {state_names}) "
        f"SELECT ids.id, {state_select} FROM unnest({state_arrays}) WITH ORDINALITY "
        f"AS r({_aliases(state_arrays)}, ord) JOIN ids ON ids.ord = r.ord "
        "WHERE ids.id IN (SELECT id FROM keys)), "
        f"backlog AS (INSERT INTO {backlog} (dead_letter_id) SELECT id FROM keys) "
        "SELECT id, position FROM keys ORDER BY id"
    )
    conn.ensure_connection()
    with conn.wrap_database_errors, psycopg.Cursor(conn.connection) as cursor:  # Django's exceptions
        cursor.execute(sql, key_params + body_params + state_params)
        return cursor.fetchall()


def _aliases(arrays: str) -> str:
    return ", ".join(f"c{i}" for i in range(arrays.count("%b")))


def _unnest(model, values: dict, n: int, conn) -> tuple[str, str, str, list]:
    """``model``'s own columns but its id: their quoted names, the select list, the ``unnest()``
    argument list (one typed binary array each) and the parameters in the order the statement
    takes them (the select list's, then the arrays), from ``values`` (or each field's default).

    A column holding one value for the whole batch (the source, the harvest time, a default,
    often the queue or topic, the status) is one scalar parameter in the select list instead of
    an array of ``n`` copies: psycopg builds binary arrays element by element in Python, which
    was the largest cost of a store in the harvesting process (issue 15)."""
    names, select, arrays, scalars, columns = [], [], [], [], []
    for f in model._meta.local_concrete_fields:
        if f.primary_key:
            continue
        column = values.get(f.attname)
        if column is None:  # a column this module does not fill: its default, like the ORM would
            column = [f.get_db_prep_save(f.get_default(), conn)] * n
        json_field = f.get_internal_type() == "JSONField"
        if json_field:
            column = [c if c is None or isinstance(c, str) else json.dumps(c) for c in column]
        kind = "text" if json_field else f.cast_db_type(conn)
        cast = "::jsonb" if json_field else ""
        names.append(conn.ops.quote_name(f.column))
        # the last column stays an array when every other one is constant: unnest() needs one
        last = f is model._meta.local_concrete_fields[-1] and not arrays
        if n > 1 and not last and column.count(column[0]) == n:
            select.append(f"%b::{kind}{cast}")
            scalars.append(column[0])
        else:
            select.append(f"r.c{len(arrays)}{cast}")
            arrays.append(f"%b::{kind}[]")
            columns.append(column)
    return ", ".join(names), ", ".join(select), ", ".join(arrays), scalars + columns


class _AlreadyStored(Exception):  # noqa: N818 - control flow, never escapes this module
    """Some positions of the batch were stored before: roll back and store only ``new``."""

    def __init__(self, new: set[str]):
        self.new = new


def _position(message: HarvestedMessage) -> str:
    """The stored form of a position (PostgreSQL text holds no NUL; the column 600 characters)."""
    return _text(message.position, 600)


def dead_letters_store(*, source: Source, batch: list[HarvestedMessage]) -> StoreResult:
    """Store one harvested batch; returns how many rows were new. Idempotent: a message
    already stored (same source and position) is counted as a duplicate and left untouched.
    Values are stored as harvested: masking is applied when they are read, never here.

    The batch is stored as if every message were new; the insert skips stored positions. If it
    skipped any (a redelivery), that transaction is rolled back and the batch stored again with
    only the positions the insert found new, so duplicates are never counted into error groups.

    A message the database refuses (``DataError`` / ``IntegrityError``: content, not an outage)
    never blocks its batch: the batch is split until the refused message is alone, and that one
    is stored as :func:`boundary.minimal` (raw bytes and a note). Raises only what is
    not about content (``OperationalError`` / ``InterfaceError``: the database is unreachable),
    or a refusal that even the minimal row meets (nothing is then stored or acknowledged).
    """
    if not batch:
        return StoreResult()
    by_position: dict[str, HarvestedMessage] = {}
    for message in batch:
        by_position.setdefault(_position(message), message)
    ids = _store_isolating(source, list(by_position.values()))
    partitions.partitions_after_store(ids=ids)
    return StoreResult(inserted=len(ids), duplicates=len(batch) - len(ids), inserted_ids=ids)


def _store_isolating(source: Source, messages: list[HarvestedMessage]) -> list[int]:
    """Store ``messages``; on a content error, halve until the refused message is found (a
    batch of n with one bad row costs about 2 log2(n) extra transactions)."""
    try:
        return _store_unique(source, messages)
    except (DataError, IntegrityError) as exc:
        if len(messages) > 1:
            half = len(messages) // 2
            return _store_isolating(source, messages[:half]) + _store_isolating(source, messages[half:])
        (message,) = messages
        log.warning(
            "source %s: the database refused dead letter %r (%s); storing it raw",
            source.name,
            message.position,
            exc,
        )
        return _store_unique(source, [minimal(message, exc)])


def _store_unique(source: Source, messages: list[HarvestedMessage]) -> list[int]:
    """Store ``messages`` (unique positions), skipping those stored before. A deadlock with
    another replica storing into the same source (they lock error groups and insert positions
    in their own orders) rolls this transaction back; it is retried a few times. So is a store
    whose ids found no partition (none was created ahead: the partitions are created first)."""
    new, deadlocks, missing_partitions = messages, 0, 0
    while True:  # ends: each retry stores strictly fewer messages, deadlocks are bounded
        try:
            return _store_new(source, new)
        except _AlreadyStored as stored:
            new = [m for m in new if _position(m) in stored.new]
        except IntegrityError as exc:
            if not _no_partition(exc) or missing_partitions >= _DEADLOCK_RETRIES:
                raise
            missing_partitions += 1
            log.warning("no dead-letter partition for the batch's ids: creating it, storing again")
            partitions.partitions_ensure(ahead=len(new))
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != "40P01" or deadlocks >= _DEADLOCK_RETRIES:
                raise
            deadlocks += 1
            log.info("source %s: deadlock with another harvester, storing the batch again", source.name)
            time.sleep(random.uniform(0, 0.05 * deadlocks))  # noqa: S311 - jitter, not a secret


def _no_partition(exc: IntegrityError) -> bool:
    """The ids outran the body's partitions (not a content error: never isolated row by row)."""
    return getattr(exc.__cause__, "sqlstate", None) == "23514" and "no partition" in str(exc)


@transaction.atomic
def _store_new(source: Source, new: list[HarvestedMessage]) -> list[int]:
    """Store ``new`` (unique positions) in one transaction, all or none: raises _AlreadyStored
    (rolling back) when some are stored already. Returns the new ids, in order. Harvester
    replicas store into one source concurrently: the UNIQUE (source, position) makes a second
    copy a no-op (its insert waits for the first one's commit), and error groups are counted
    under row locks (:func:`error_groups_record`)."""
    now = timezone.now()
    failures = [
        Failure(_text(m.error_class, 500), _text(m.error_message), _text(m.reason, 100), m.failed_at or now)
        for m in new
    ]
    recorded = error_groups_record(source_id=source.pk, failures=failures)
    inserted = _insert(source, new, failures, recorded.per_failure, now)
    if len(inserted) < len(new):
        raise _AlreadyStored({position for _, position in inserted})
    Source.objects.filter(pk=source.pk).update(
        harvested_total=F("harvested_total") + len(inserted), last_harvest_at=now
    )
    if recorded.appeared:
        alerts.alerts_on_groups_appeared(groups=recorded.appeared)
    return [pk for pk, _ in inserted]


@dataclass
class HarvestReport:
    source: str
    received: int = 0
    inserted: int = 0
    duplicates: int = 0
    backlog: int | None = None
    exhausted: bool = False
    error: str = ""


#: the database is unreachable: not the source's fault, and nothing can be recorded anyway
DB_OUTAGES = (OperationalError, InterfaceError)


def failure_text(exc: BaseException) -> str:
    """A harvest failure as shown on the source: a BrokerError's own message; anything else
    (a bug or an unforeseen input) with its type, so it is not mistaken for a broker error."""
    return str(exc) if isinstance(exc, BrokerError) else f"{type(exc).__name__}: {exc}"


def source_record_failure(source: Source, exc: BaseException) -> None:
    """Show ``exc`` as the source's last error (connections page, API)."""
    text = _text(failure_text(exc))
    Source.objects.filter(pk=source.pk).update(last_error=text, last_error_at=timezone.now())
    log.warning("harvest of %s failed: %s", source.name, text)


def _record_success(source: Source, cursor: dict, backlog: int | None) -> None:
    Source.objects.filter(pk=source.pk).update(
        cursor=cursor, backlog=backlog, last_harvest_at=timezone.now(), last_error=""
    )


def _unchanged(source: Source, received: int, cursor: dict, backlog: int | None, every: float) -> bool:
    """True when a pass found nothing and would write what the row already says, less than
    ``every`` seconds after the last write (``last_harvest_at`` is then at most that old)."""
    if received or source.last_error or source.last_harvest_at is None:
        return False
    if (source.cursor or {}) != cursor or source.backlog != backlog:
        return False
    return (timezone.now() - source.last_harvest_at).total_seconds() < every


async def source_harvest_with(
    adapter: BrokerAdapter,
    *,
    source: Source,
    limit: int | None = None,
    batch_size: int | None = None,
    idle_write_every: float = 0.0,
) -> HarvestReport:
    """One harvest pass over ``source`` through an open ``adapter`` (async; see source_harvest).
    With ``idle_write_every`` (the follow-mode harvester), a pass that found nothing and changed
    nothing writes the source row at most that often instead of after every pass."""
    report = HarvestReport(source=source.name)
    spec = source_spec(source)
    size = batch_size or int(spec.options.get("batch_size") or settings.DLQADMIN_HARVEST_BATCH_SIZE)

    def store(batch: list[HarvestedMessage]) -> None:
        result = dead_letters_store(source=source, batch=batch)
        report.inserted += result.inserted
        report.duplicates += result.duplicates
        live.dead_letters_arrived(source_id=source.pk, count=result.inserted)

    try:
        # prepares the source first when the broker says it is not (e.g. its capture was deleted)
        result, spec = await harvest_preparing(
            adapter,
            source=source,
            spec=spec,
            sink=sync_to_async(store, thread_sensitive=True),
            limit=limit,
            batch_size=size,
        )
        backlog = result.backlog if result.backlog is not None else await adapter.backlog(spec)
    except DB_OUTAGES:
        raise
    except Exception as exc:
        report.error = failure_text(exc)
        await sync_to_async(source_record_failure, thread_sensitive=True)(source, exc)
        raise
    report.received = result.received
    report.backlog = backlog
    report.exhausted = result.exhausted
    if idle_write_every and _unchanged(source, result.received, spec.cursor, backlog, idle_write_every):
        return report
    await sync_to_async(_record_success, thread_sensitive=True)(source, spec.cursor, backlog)
    return report


def source_harvest(
    *, source: Source, limit: int | None = None, batch_size: int | None = None
) -> HarvestReport:
    """One harvest pass over ``source``: drain what the broker holds now (up to ``limit``).

    Every batch is committed to the database before the broker acks it. Records the outcome on
    the source (counters, backlog, last error). Raises BrokerError (or any unforeseen error) after
    recording it as the source's last error; a database outage is raised unrecorded.
    """
    config = connection_config(source.connection)

    async def harvest() -> HarvestReport:
        async with brokers.get_adapter(config) as adapter:
            return await source_harvest_with(adapter, source=source, limit=limit, batch_size=batch_size)

    return brokers.run(harvest)
