"""Reads for the dashboard pages: overview counters, failure timelines, sparklines, job rates.

Every function here is read-only and bounded: aggregates run in the database (GROUP BY over the
indexed ``failed_at`` range), never by loading rows into Python. Those taking ``user`` count only
the sources that user may see (``dlqadmin.selectors.limit_to_visible``; None: every source).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Max, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

import brokers
from brokers.base import Capability
from dlqadmin.models import (
    ACTIVE_JOB_STATUSES,
    Connection,
    DeadLetter,
    DeadLetterStatus,
    ErrorGroup,
    ErrorGroupStatus,
    RedriveJob,
    Source,
)
from dlqadmin.selectors import error_groups_for, limit_to_visible, visible_sources

log = logging.getLogger(__name__)

#: statuses that still need an operator's decision
OPEN_STATUSES = (DeadLetterStatus.NEW, DeadLetterStatus.FAILED, DeadLetterStatus.PARKED)
#: statuses a "redrive everything in this group" acts on by default
REDRIVABLE_STATUSES = (DeadLetterStatus.NEW, DeadLetterStatus.FAILED)
#: most sources drawn as their own series in the failures chart; the rest are summed as "other"
CHART_SERIES = 8


# ------------------------------------------------------------------------------------------
# Capabilities


def source_capabilities(source: Source) -> Capability:
    """What ``source``'s adapter can do for its mode (NATS core subjects keep nothing, ...).

    A broken or missing adapter must not take the dashboard down: it degrades to harvest and
    redrive (what every kind supports) and logs why."""
    try:
        cls = brokers.adapter_class(source.connection.kind)
    except Exception:  # noqa: BLE001 - an adapter import error must not break a page
        log.warning("capabilities of %s unavailable", source.connection.kind, exc_info=True)
        return Capability.HARVEST | Capability.REDRIVE
    by_mode = getattr(cls, "mode_capabilities", None)
    return by_mode(source.mode) if by_mode else cls.capabilities


def kind_capabilities(kind: str) -> Capability:
    try:
        return brokers.capabilities(kind)
    except Exception:  # noqa: BLE001 - see source_capabilities
        log.warning("capabilities of %s unavailable", kind, exc_info=True)
        return Capability.HARVEST | Capability.REDRIVE


# ------------------------------------------------------------------------------------------
# Overview


@dataclass
class SourceRow:
    source: Source
    open: int = 0
    last_24h: int = 0


@dataclass
class ConnectionRow:
    connection: Connection
    sources: list[SourceRow] = field(default_factory=list)


def status_counts(*, user=None) -> dict[str, int]:
    """Dead letters per status (every status present, zero when none)."""
    counts = dict.fromkeys(DeadLetterStatus.values, 0)
    rows = limit_to_visible(DeadLetter.objects.order_by(), user).values("status").annotate(n=Count("id"))
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts


def connections_overview(*, user=None, now: datetime | None = None) -> list[ConnectionRow]:
    """Each connection with the sources ``user`` may see and, per source, open messages and
    last-24h failures."""
    now = now or timezone.now()
    per_source = {
        row["source_id"]: row
        for row in limit_to_visible(DeadLetter.objects.order_by(), user)
        .values("source_id")
        .annotate(
            open=Count("id", filter=Q(status__in=OPEN_STATUSES)),
            last_24h=Count("id", filter=Q(failed_at__gte=now - timedelta(hours=24))),
        )
    }
    rows: dict[int, ConnectionRow] = {}
    for connection in Connection.objects.order_by("name"):
        rows[connection.pk] = ConnectionRow(connection=connection)
    for source in visible_sources(user).select_related("connection").order_by("name"):
        stats = per_source.get(source.pk, {})
        rows[source.connection_id].sources.append(
            SourceRow(source=source, open=stats.get("open", 0), last_24h=stats.get("last_24h", 0))
        )
    return list(rows.values())


def failures_timeline(*, hours: int, bucket_hours: int, user=None, now: datetime | None = None) -> dict:
    """Failures per source over the last ``hours`` in ``bucket_hours`` buckets, for Chart.js.

    Returns ``{"labels": [iso...], "series": [{"label": source, "data": [n...]}, ...]}`` with
    the busiest sources first and the remainder summed as "other sources"."""
    now = (now or timezone.now()).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = now - timedelta(hours=hours)
    buckets = hours // bucket_hours
    labels = [(start + timedelta(hours=i * bucket_hours)).isoformat() for i in range(buckets)]
    counts: dict[int, list[int]] = {}
    rows = (
        limit_to_visible(DeadLetter.objects.filter(failed_at__gte=start, failed_at__lt=now), user)
        .order_by()
        .annotate(hour=TruncHour("failed_at"))
        .values("source_id", "hour")
        .annotate(n=Count("id"))
    )
    for row in rows:
        index = int((row["hour"] - start).total_seconds() // 3600) // bucket_hours
        if 0 <= index < buckets:
            counts.setdefault(row["source_id"], [0] * buckets)[index] += row["n"]
    names = dict(Source.objects.filter(pk__in=counts).values_list("pk", "name"))
    ranked = sorted(counts.items(), key=lambda item: -sum(item[1]))
    series = [{"label": names.get(pk, f"source {pk}"), "data": data} for pk, data in ranked[:CHART_SERIES]]
    if len(ranked) > CHART_SERIES:
        other = [sum(col) for col in zip(*(data for _, data in ranked[CHART_SERIES:]), strict=True)]
        series.append({"label": "other sources", "data": other})
    return {"labels": labels, "series": series, "bucket_hours": bucket_hours}


def top_open_groups(*, user=None, limit: int = 8) -> list[ErrorGroup]:
    return list(
        error_groups_for(user)
        .filter(status=ErrorGroupStatus.OPEN)
        .select_related("source")
        .order_by("-count", "-last_seen")[:limit]
    )


def active_jobs() -> list[RedriveJob]:
    return list(RedriveJob.objects.filter(status__in=ACTIVE_JOB_STATUSES).order_by("-created_at")[:20])


# ------------------------------------------------------------------------------------------
# Error groups


def group_sparklines(group_ids: list[int], *, days: int = 14, now: datetime | None = None) -> dict:
    """``{group_id: [daily failure counts, oldest first]}`` for the last ``days`` days."""
    now = now or timezone.now()
    end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    start = end - timedelta(days=days)
    out = {pk: [0] * days for pk in group_ids}
    rows = (
        DeadLetter.objects.filter(error_group_id__in=group_ids, failed_at__gte=start, failed_at__lt=end)
        .order_by()
        .annotate(hour=TruncHour("failed_at"))
        .values("error_group_id", "hour")
        .annotate(n=Count("id"))
    )
    for row in rows:
        index = int((row["hour"] - start).total_seconds() // 86400)
        if 0 <= index < days:
            out[row["error_group_id"]][index] += row["n"]
    return out


def group_status_counts(group: ErrorGroup) -> dict[str, int]:
    counts = dict.fromkeys(DeadLetterStatus.values, 0)
    for row in group.dead_letters.order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


# ------------------------------------------------------------------------------------------
# Messages


def newest_dead_letter_id() -> int:
    """The highest id now: pins "all N matching" to the rows the operator was shown."""
    return DeadLetter.objects.aggregate(top=Max("id"))["top"] or 0


def selection_status_counts(qs) -> dict[str, int]:
    """Status breakdown of a selection (a redrive plan warns about already-settled messages)."""
    return {row["status"]: row["n"] for row in qs.order_by().values("status").annotate(n=Count("id"))}


def known_reasons(limit: int = 50) -> list[str]:
    """Broker reasons seen so far (from error groups: a small table, not the message table)."""
    return list(
        ErrorGroup.objects.exclude(reason="")
        .order_by("reason")
        .values_list("reason", flat=True)
        .distinct()[:limit]
    )


# ------------------------------------------------------------------------------------------
# Jobs


@dataclass
class JobRate:
    per_second: float | None
    eta_seconds: float | None


def job_rate(job: RedriveJob, *, now: datetime | None = None) -> JobRate:
    """Average messages per second since the job started, and the time left at that rate."""
    if not job.started_at or not job.done:
        return JobRate(None, None)
    end = job.finished_at or now or timezone.now()
    elapsed = max((end - job.started_at).total_seconds(), 0.001)
    rate = job.done / elapsed
    left = max(job.total - job.done, 0)
    return JobRate(rate, left / rate if rate and not job.finished_at else None)
