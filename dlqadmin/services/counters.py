"""Monotonic counters (``models/counters.py``): add where things happen, fold now and then.

``counters_add`` appends delta rows inside the caller's transaction, so a counter moves exactly
when the change it counts commits (a rolled-back redrive record counts nothing). About one call
in 64 also folds the deltas into the base rows, one folder at a time (the others skip).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

from django.db import connection as db_connection
from django.db.models import Sum

from dlqadmin.models import SourceCounter

FOLD_EVERY = 64


def counters_add(*, name: str, by_source: dict[int, int]) -> None:
    """Count ``by_source`` ({source id: how many}) into counter ``name``. Idempotent it is not:
    call it once per event, in the transaction that makes the event happen."""
    rows = [SourceCounter(source_id=sid, name=name, n=n) for sid, n in by_source.items() if n > 0]
    if not rows:
        return
    SourceCounter.objects.bulk_create(rows)
    if random.random() < 1.0 / FOLD_EVERY:  # noqa: S311 - not security, just spreading the work
        counters_fold()


def counters_add_for_letters(*, name: str, source_ids: Iterable[int]) -> None:
    """Count dead letters into counter ``name``, per source: ``source_ids`` holds the source id of
    each letter (one entry per letter, as the caller already has them: no query)."""
    counters_add(name=name, by_source=Counter(source_ids))


def counters_fold() -> None:
    """Fold the delta rows into one base row per (source, name); skipped while another folds."""
    table = db_connection.ops.quote_name(SourceCounter._meta.db_table)
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"WITH lock AS (SELECT pg_try_advisory_xact_lock(hashtext('dlqadmin_counters_fold')) AS ok), "  # noqa: S608
            f"moved AS (DELETE FROM {table} WHERE delta AND (SELECT ok FROM lock) "
            "RETURNING source_id, name, n) "
            f"INSERT INTO {table} AS base (source_id, name, n, delta) "
            "SELECT source_id, name, sum(n), false FROM moved GROUP BY 1, 2 ORDER BY 1, 2 "
            "ON CONFLICT (source_id, name) WHERE NOT delta DO UPDATE SET n = base.n + excluded.n"
        )


def counter_totals() -> dict[tuple[int, str], int]:
    """{(source id, counter name): total} over base and delta rows (a few rows per source)."""
    rows = SourceCounter.objects.order_by().values("source_id", "name").annotate(total=Sum("n"))
    return {(row["source_id"], row["name"]): row["total"] for row in rows}
