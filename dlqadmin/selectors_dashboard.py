"""Reads for the dashboard pages: overview counters, failure timelines, sparklines, job rates.

Every function here is read-only and bounded: aggregates run in the database (GROUP BY over the
indexed ``failed_at`` range), never by loading rows into Python. Those taking ``user`` count only
the sources that user may see (``dlqadmin.selectors.limit_to_visible``; None: every source).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import Count, IntegerField, Max, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

import brokers
from brokers.base import Capability
from dlqadmin.models import (
    ACTIVE_JOB_STATUSES,
    SILENT_SECONDS,
    Connection,
    DeadLetter,
    DeadLetterStatus,
    ErrorGroup,
    ErrorGroupStatus,
    FailureTally,
    GroupDayTally,
    GroupStatusTally,
    Heartbeat,
    RedriveAttemptStatus,
    RedriveJob,
    Source,
    StatusTally,
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


def mode_capabilities(kind: str, mode: str | None) -> Capability:
    """What a source of ``kind`` in ``mode`` supports (NATS core subjects keep nothing, so they
    cannot peek or remove a copy, ...): the one definition the dashboard and the API show, from
    the adapters' declarations (``brokers.capabilities``). ``mode=None``: the kind as a whole.

    A broken or missing adapter must not take a page down: it degrades to harvest and redrive
    (what every kind supports) and logs why."""
    try:
        return brokers.capabilities(kind, mode)
    except Exception:  # noqa: BLE001 - an adapter import error must not break a page
        log.warning("capabilities of %s unavailable", kind, exc_info=True)
        return Capability.HARVEST | Capability.REDRIVE


def source_capabilities(source: Source) -> Capability:
    """What ``source``'s adapter can do for its mode (see :func:`mode_capabilities`)."""
    return mode_capabilities(source.connection.kind, source.mode)


def kind_capabilities(kind: str) -> Capability:
    return mode_capabilities(kind, None)


def capability_names(caps: Capability) -> list[str]:
    """``harvest``, ``redrive``, ``peek`` ... in declaration order, as the API and the
    connections page list them."""
    return [c.name.lower() for c in Capability if c.name and c.value and c in caps]


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


@dataclass
class ReplicaRow:
    """One harvester replica as its heartbeat tells it (sources limited to what the viewer sees)."""

    instance: str
    last_seen: datetime
    running: bool
    stopped_at: str = ""
    sources: list[str] = field(default_factory=list)
    partitions: dict[str, list[int]] = field(default_factory=dict)
    last_batch: dict = field(default_factory=dict)
    stored: int = 0


def harvester_replicas(*, user=None, now: datetime | None = None) -> list[ReplicaRow]:
    """Every harvester replica that beat in the last day, newest first: running (a beat within
    ``SILENT_SECONDS`` and no clean stop) or stopped, with the sources and Kafka partitions it
    holds and its last batch. Source names ``user`` may not see are left out."""
    now = now or timezone.now()
    beats = Heartbeat.objects.filter(component="harvester", last_seen__gte=now - timedelta(days=1))
    visible = None if user is None else set(visible_sources(user).values_list("name", flat=True))

    def shown(name: str) -> bool:
        return visible is None or name in visible

    rows = []
    for hb in beats.order_by("-last_seen", "instance"):
        details = hb.details or {}
        last_batch = details.get("last_batch") or {}
        rows.append(
            ReplicaRow(
                instance=hb.instance,
                last_seen=hb.last_seen,
                running=not details.get("stopped_at")
                and (now - hb.last_seen).total_seconds() <= SILENT_SECONDS,
                stopped_at=details.get("stopped_at") or "",
                sources=[name for name in details.get("sources", []) if shown(name)],
                partitions={k: v for k, v in (details.get("partitions") or {}).items() if shown(k)},
                last_batch=last_batch if shown(last_batch.get("source", "")) else {},
                stored=int(details.get("stored") or 0),
            )
        )
    return rows


def _status_rows(user):
    """Rows of (source_id, status, n) for the sources ``user`` may see, from the tallies."""
    qs = limit_to_visible(StatusTally.objects.order_by(), user, field="source_id")
    return qs.values("source_id", "status").annotate(total=Sum("n"))


def _buckets_since(start: datetime, column: str, seconds: int) -> RawSQL:
    """Which ``seconds``-long bucket since ``start`` a tally's ``column`` falls in, computed by
    PostgreSQL: an integer per row is far cheaper to send and read than a timestamp."""
    return RawSQL(  # noqa: S611 - ``column`` is one of ours, the values are parameters
        f"floor(extract(epoch from ({column} - %s)) / %s)::integer",
        (start, seconds),
        output_field=IntegerField(),
    )


def status_counts(*, user=None) -> dict[str, int]:
    """Dead letters per status (every status present, zero when none)."""
    counts = dict.fromkeys(DeadLetterStatus.values, 0)
    for row in _status_rows(user):
        counts[row["status"]] = counts.get(row["status"], 0) + row["total"]
    return counts


def _failures_since(cut: datetime, user) -> dict[int, int]:
    """``{source_id: failures with failed_at >= cut}``: whole hours from the tallies, the part
    of an hour before the first whole one from the table (an index range of under an hour)."""
    hour = cut.replace(minute=0, second=0, microsecond=0)
    whole = hour if hour == cut else hour + timedelta(hours=1)
    out: dict[int, int] = {}
    tallies = limit_to_visible(
        FailureTally.objects.filter(hour__gte=whole).order_by(), user, field="source_id"
    )
    part = limit_to_visible(
        DeadLetter.objects.filter(failed_at__gte=cut, failed_at__lt=whole).order_by(), user
    )
    for qs, measure in ((tallies, Sum("n")), (part, Count("id"))):
        for source_id, n in qs.values("source_id").annotate(n=measure).values_list("source_id", "n"):
            out[source_id] = out.get(source_id, 0) + n
    return out


def connections_overview(*, user=None, now: datetime | None = None) -> list[ConnectionRow]:
    """Each connection with the sources ``user`` may see and, per source, open messages and
    last-24h failures."""
    now = now or timezone.now()
    open_by_source: dict[int, int] = {}
    for row in _status_rows(user):
        if row["status"] in OPEN_STATUSES:
            open_by_source[row["source_id"]] = open_by_source.get(row["source_id"], 0) + row["total"]
    recent = _failures_since(now - timedelta(hours=24), user)
    rows: dict[int, ConnectionRow] = {}
    for connection in Connection.objects.order_by("name"):
        rows[connection.pk] = ConnectionRow(connection=connection)
    for source in visible_sources(user).select_related("connection").order_by("name"):
        rows[source.connection_id].sources.append(
            SourceRow(source=source, open=open_by_source.get(source.pk, 0), last_24h=recent.get(source.pk, 0))
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
    tallies = FailureTally.objects.filter(hour__gte=start, hour__lt=now).order_by()
    rows = (
        limit_to_visible(tallies, user, field="source_id")
        .annotate(bucket=_buckets_since(start, "hour", bucket_hours * 3600))
        .values_list("source_id", "bucket")
        .annotate(n=Sum("n"))
    )
    for source_id, index, n in rows:
        if 0 <= index < buckets:
            counts.setdefault(source_id, [0] * buckets)[index] += n
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
    tallies = GroupDayTally.objects.filter(error_group_id__in=group_ids, day__gte=start, day__lt=end)
    rows = (
        tallies.order_by()
        .annotate(bucket=_buckets_since(start, "day", 86400))
        .values_list("error_group_id", "bucket")
        .annotate(n=Sum("n"))
    )
    for group_id, index, n in rows:
        if 0 <= index < days:
            out[group_id][index] += n
    return out


def group_status_counts(group: ErrorGroup) -> dict[str, int]:
    """``{status: dead letters of ``group`` in it}``, from the tallies: a few rows, however big
    the group (counting its rows of the state table grew with it: 40 ms for 400k)."""
    counts = dict.fromkeys(DeadLetterStatus.values, 0)
    tallies = GroupStatusTally.objects.filter(error_group_id=group.pk).order_by()
    for status, n in tallies.values("status").annotate(n=Sum("n")).values_list("status", "n"):
        counts[status] = n
    return counts


# ------------------------------------------------------------------------------------------
# Messages


#: a list page counts its matches up to this many and shows "1,000+" beyond: an exact count of a
#: million rows takes seconds, so it is made only on request (``count_exact``)
COUNT_CAP = 1000
#: and gives up on even that after this long (PostgreSQL), showing "many" with the same link
COUNT_TIMEOUT_MS = 250


@dataclass(frozen=True)
class MatchCount:
    """How many rows match: ``n`` exactly, or at least ``n`` when ``exact`` is False."""

    n: int
    exact: bool

    @property
    def text(self) -> str:
        if self.exact:
            return f"{self.n:,}"
        return f"{self.n:,}+" if self.n else "many"


def count_capped(qs: QuerySet, *, cap: int | None = None, at_least: int = 0) -> MatchCount:
    """Count ``qs`` up to ``cap`` rows: ``SELECT count(*) FROM (... LIMIT cap + 1)``, which stops
    at the cap instead of visiting every match.

    Without ORDER BY, so the planner takes its cheapest way to the first ``cap + 1`` matches (on
    the bench table 1.7 ms instead of 79 for source + status + time, 78 ms instead of 1.1 s for
    a header). Should that guess be wrong (matches bunched where it looks last), PostgreSQL
    stops after COUNT_TIMEOUT_MS and the answer is "at least ``at_least``" (what the caller has
    already seen), never a slow page."""
    cap = COUNT_CAP if cap is None else cap
    timeout = "SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, true)"
    # the setting is local to the transaction: it ends with it, unless an outer one goes on
    outer = db_connection.in_atomic_block
    try:
        with transaction.atomic(), db_connection.cursor() as cursor:
            cursor.execute(timeout, [str(int(COUNT_TIMEOUT_MS))])
            previous = cursor.fetchone()[0]
            n = qs.order_by()[: cap + 1].count()
            if outer:
                cursor.execute(timeout, [previous])
    except OperationalError:  # statement_timeout (psycopg's QueryCanceled); rolled back, setting too
        return MatchCount(at_least, False)
    return MatchCount(n, True) if n <= cap else MatchCount(cap, False)


def count_exact(qs: QuerySet) -> MatchCount:
    """Every match (on request only: proportional to the number of matches)."""
    return MatchCount(qs.order_by().count(), True)


def newest_dead_letter_id() -> int:
    """The highest id now: pins "all N matching" to the rows the operator was shown."""
    return DeadLetter.objects.aggregate(top=Max("id"))["top"] or 0


def selection_status_counts(qs) -> dict[str, int]:
    """Status breakdown of a selection (a redrive plan warns about already-settled messages)."""
    return {row["status"]: row["n"] for row in qs.order_by().values("status").annotate(n=Count("id"))}


def known_reasons(user, limit: int = 50) -> list[str]:
    """Broker reasons seen so far in the sources ``user`` may see (from error groups: a small
    table, not the message table)."""
    return list(
        error_groups_for(user)
        .exclude(reason="")
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


def job_skipped_reasons(job: RedriveJob, *, limit: int = 10) -> list[tuple[str, int]]:
    """Why a job's messages were skipped (loop guard, needs a destination, cancelled): (reason,
    count), most frequent first, at most ``limit`` distinct reasons."""
    rows = (
        job.attempts.filter(status=RedriveAttemptStatus.SKIPPED)
        .values_list("error")
        .annotate(n=Count("id"))
        .order_by("-n", "error")[:limit]
    )
    return list(rows)
