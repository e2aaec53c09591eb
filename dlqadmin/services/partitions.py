"""Dead-letter partitions created ahead of the ids (``dlqadmin/partition_sql.py``).

The body table is partitioned by id ranges of ``DLQADMIN_PARTITION_SIZE``; an insert must always
find its partition, so one whole spare partition is kept beyond the ids handed out. Who keeps it:
migration 0020, the harvester after a store that reached the last partition
(:func:`partitions_after_store`), the Celery beat task every five minutes, the ORM save and the
bench's COPY. A store that finds no partition all the same creates them and stores again
(``services/harvest/store.py``). Retention removes a partition whole once all its rows may go
(:func:`partition_purge`, called by ``maintenance.retention_purge``).
"""

from __future__ import annotations

import logging
from collections import Counter

from django.db import OperationalError, connection, transaction

from dlqadmin import partition_sql
from dlqadmin.models import (
    CounterName,
    DeadLetterKey,
    DeadLetterRevision,
    DeadLetterSearch,
    DeadLetterState,
    RedriveAttempt,
    SearchBacklog,
)
from dlqadmin.models.dead_letters import partitions_ahead, partitions_ensure_now
from dlqadmin.services.counters import counters_add

log = logging.getLogger(__name__)


def partitions_ensure(*, ahead: int = 0) -> list[str]:
    """Create partitions until a spare one lies beyond the ids (and ``ahead`` more); returns the
    names created."""
    return partitions_ensure_now(ahead=ahead)


def partitions_after_store(*, ids: list[int]) -> None:
    """After a store: nothing unless its ids reached the highest partition (compared with the
    bound this process remembers), then the DDL of :func:`partitions_ensure`. The batch is
    stored already: a lock wait that timed out is logged and left for the next store or beat."""
    if not ids:
        return
    try:
        partitions_ahead(last=max(ids))
    except OperationalError as exc:
        log.warning("dead-letter partitions not created ahead this time: %s", exc)


class _Survivor(Exception):  # noqa: N818 - control flow, never escapes this module
    """A row of the partition may not go after all (it changed meanwhile): roll back."""


def partitions_behind() -> list[partition_sql.Partition]:
    """The partitions entirely behind the ids handed out (no new row can go into them), lowest
    first: the one being filled and the spares are never among them."""
    with connection.cursor() as cursor:
        current = partition_sql.last_id(cursor)
        return [p for p in partition_sql.partitions(cursor) if p.upper <= current]


def partition_purge(*, partition: partition_sql.Partition, cutoff, statuses: list[str]) -> Counter | None:
    """Remove ``partition`` whole if every dead letter in it may go (status in ``statuses``,
    failed before ``cutoff``, held by no redrive job): its state rows (the tally triggers count
    them out), key, search, backlog, revision and attempt rows, then the body partition itself,
    all in one transaction. Returns the removed rows per source, or None (nothing changed) when
    some row must stay or the tables stayed busy for longer than the lock timeout."""
    lower = -(2**63) if partition.lower is None else partition.lower
    bounds = {"lower": lower, "upper": partition.upper, "cutoff": cutoff, "statuses": list(statuses)}
    ids, letters = (
        "id >= %(lower)s AND id < %(upper)s",
        "dead_letter_id >= %(lower)s AND dead_letter_id < %(upper)s",
    )
    states, attempts = _table(DeadLetterState), _table(RedriveAttempt)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '10s'")
            # no insert is still under way into it, nor can one start
            cursor.execute(f"LOCK TABLE {connection.ops.quote_name(partition.name)} IN ACCESS EXCLUSIVE MODE")
            cursor.execute(
                f"SELECT EXISTS (SELECT 1 FROM {states} WHERE {ids} "  # noqa: S608
                "AND (status <> ALL(%(statuses)s) OR failed_at >= %(cutoff)s)) "
                f"OR EXISTS (SELECT 1 FROM {attempts} WHERE {letters} AND holds)",
                bounds,
            )
            if cursor.fetchone()[0]:
                return None
            cursor.execute(
                f"WITH gone AS (DELETE FROM {states} WHERE {ids} AND status = ANY(%(statuses)s) "  # noqa: S608
                "AND failed_at < %(cutoff)s RETURNING source_id) "
                "SELECT source_id, count(*) FROM gone GROUP BY source_id",
                bounds,
            )
            by_source = Counter(dict(cursor.fetchall()))
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {states} WHERE {ids})", bounds)  # noqa: S608
            if cursor.fetchone()[0]:  # one changed between the check and the delete
                raise _Survivor
            for model in (RedriveAttempt, DeadLetterRevision, DeadLetterKey, DeadLetterSearch, SearchBacklog):
                cursor.execute(f"DELETE FROM {_table(model)} WHERE {letters}", bounds)  # noqa: S608
            partition_sql.detach_and_drop(cursor, partition.name)
            counters_add(name=CounterName.PURGED, by_source=by_source)
    except _Survivor:
        return None
    except OperationalError as exc:  # the lock timeout: the rows are deleted row by row instead
        log.info("retention: partition %s stays for now (%s)", partition.name, exc)
        return None
    log.info("retention: dropped partition %s (%d dead letters)", partition.name, by_source.total())
    return by_source


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)
