"""Error groups: fingerprint each failure and keep per-group counts and lifecycle.

A fingerprint is the source + exception class + the error message with the volatile parts
(timestamps, UUIDs, hex ids, numbers, quoted values) normalised away, so "order 123 not found"
and "order 456 not found" land in one group. With no exception class the broker's reason
(rejected, expired, max_deliveries, ...) stands in for it.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from dlqadmin.models import ErrorGroup, ErrorGroupStatus

_NORMALISERS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?\b"), "<ts>"),
    (
        re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
        "<uuid>",
    ),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{16,}\b"), "<hex>"),
    (re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"), "<email>"),
    (re.compile(r"(?<![A-Za-z_<\d])[-+]?\d+(\.\d+)?"), "<n>"),
    (re.compile(r"\b(?=\w*\d)(?=\w*[A-Za-z])[A-Za-z0-9_-]{12,}\b"), "<id>"),
    (re.compile(r"'[^']{1,200}'"), "'<v>'"),
    (re.compile(r'"[^"]{1,200}"'), '"<v>"'),
    (re.compile(r"\s+"), " "),
]
MAX_PATTERN = 500
#: what counting a failure into an existing group changes
_COUNTED_FIELDS = ["count", "first_seen", "last_seen", "status", "status_changed_at"]


def normalise_message(message: str) -> str:
    """The error message with volatile parts replaced by placeholders (first line only)."""
    text = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    for pattern, replacement in _NORMALISERS:
        text = pattern.sub(replacement, text)
    return text.strip()[:MAX_PATTERN]


@functools.lru_cache(maxsize=4096)
def fingerprint(*, source_id: int, error_class: str, message: str, reason: str) -> tuple[str, str]:
    """``(fingerprint, normalised message)`` for one failure (cached: DLQs repeat themselves)."""
    pattern = normalise_message(message)
    kind = error_class.strip() or f"reason:{reason.strip()}"
    digest = hashlib.sha256(f"{source_id}\x1f{kind}\x1f{pattern}".encode()).hexdigest()
    return digest, pattern


@dataclass
class Failure:
    error_class: str
    message: str
    reason: str
    failed_at: datetime


@dataclass
class GroupsRecorded:
    per_failure: list[ErrorGroup]
    #: groups that appeared (created) or came back (a resolved group reopened) in this batch
    appeared: list[ErrorGroup]


def _update_counted(groups: list[ErrorGroup]) -> None:
    """Write the counted fields of ``groups`` (rows locked by the caller) in one statement.

    ``UPDATE ... FROM unnest(arrays)``: ``bulk_update``'s ``CASE WHEN`` per field and group
    costs more Python than the rest of the batch's grouping."""
    conn = connections[DEFAULT_DB_ALIAS]
    table = conn.ops.quote_name(ErrorGroup._meta.db_table)
    with conn.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS g SET count = v.count, first_seen = v.first_seen, "  # noqa: S608
            "last_seen = v.last_seen, status = v.status, status_changed_at = v.status_changed_at "
            "FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[], %s::timestamptz[], "
            "%s::varchar[], %s::timestamptz[]) AS v(id, count, first_seen, last_seen, status, "
            "status_changed_at) WHERE g.id = v.id",
            [
                [g.pk for g in groups],
                [g.count for g in groups],
                [g.first_seen for g in groups],
                [g.last_seen for g in groups],
                [g.status for g in groups],
                [g.status_changed_at for g in groups],
            ],
        )


def _locked(prints) -> dict[str, ErrorGroup]:
    """The groups of ``prints`` that exist, locked FOR UPDATE in fingerprint order (two storing
    transactions take their common groups in the same order, so they queue instead of
    deadlocking)."""
    rows = ErrorGroup.objects.select_for_update().filter(fingerprint__in=prints).order_by("fingerprint")
    return {g.fingerprint: g for g in rows}


def _create_missing(missing: list[str], first: dict[str, tuple[str, Failure]], source_id: int) -> None:
    """Insert the groups of ``missing`` with count 0, ``ON CONFLICT DO NOTHING``: when another
    harvester's transaction creates the same group meanwhile, this insert waits for its commit
    and then leaves the row to it (or takes over if it rolled back)."""
    ErrorGroup.objects.bulk_create(
        [
            ErrorGroup(
                fingerprint=fp,
                source_id=source_id,
                error_class=first[fp][1].error_class[:500],
                reason=first[fp][1].reason[:100],
                message_pattern=first[fp][0],
                sample_message=first[fp][1].message[:2000],
                count=0,
                first_seen=first[fp][1].failed_at,
                last_seen=first[fp][1].failed_at,
            )
            for fp in sorted(missing)
        ],
        ignore_conflicts=True,
    )


def error_groups_record(*, source_id: int, failures: Iterable[Failure]) -> GroupsRecorded:
    """Count ``failures`` into their groups (created as needed): one group per failure, in order.
    A failure in a resolved group reopens it. Call inside the storing transaction.

    Safe with concurrent callers (harvester replicas storing into one source at once, no lock
    around the source): every group counted is locked FOR UPDATE first and its count read under
    the lock, so increments add up exactly; a missing group is inserted with ``ON CONFLICT DO
    NOTHING`` and then locked like the others. A group is new (``appeared``) when its locked count
    is still 0: a group another transaction created is committed with its first failures
    counted, and counts never go down."""
    failures = list(failures)
    keyed = [
        (fingerprint(source_id=source_id, error_class=f.error_class, message=f.message, reason=f.reason), f)
        for f in failures
    ]
    first: dict[str, tuple[str, Failure]] = {}
    for (fp, pattern), f in keyed:
        first.setdefault(fp, (pattern, f))
    groups = _locked(first)
    missing = [fp for fp in first if fp not in groups]
    if missing:
        _create_missing(missing, first, source_id)
        groups.update(_locked(missing))
    now = timezone.now()
    appeared: dict[str, ErrorGroup] = {fp: g for fp, g in groups.items() if g.count == 0}
    for (fp, _), f in keyed:
        group = groups[fp]
        group.count += 1
        group.first_seen = min(group.first_seen, f.failed_at)
        group.last_seen = max(group.last_seen, f.failed_at)
        if group.status == ErrorGroupStatus.RESOLVED:
            group.status = ErrorGroupStatus.OPEN
            group.status_changed_at = now
            appeared[fp] = group
    _update_counted(list(groups.values()))
    return GroupsRecorded(per_failure=[groups[fp] for (fp, _), _ in keyed], appeared=list(appeared.values()))
