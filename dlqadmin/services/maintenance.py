"""Scheduled upkeep: the automatic retry policy and the retention purge (run by Celery beat)."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from dlqadmin.models import (
    CounterName,
    DeadLetter,
    DeadLetterState,
    DeadLetterStatus,
    RedriveAttempt,
    Source,
)
from dlqadmin.services import partitions
from dlqadmin.services.audit import audit_record
from dlqadmin.services.counters import counters_add
from dlqadmin.services.redrive import destination as routes
from dlqadmin.services.redrive.jobs import RedriveError, redrive_job_create

log = logging.getLogger(__name__)

#: every state nothing more happens to by itself: all but NEW (awaiting a decision) and QUEUED
#: (in a redrive job). A redriven, failed or parked message is kept as long as any other.
PURGEABLE = [
    DeadLetterStatus.REDRIVEN,
    DeadLetterStatus.FAILED,
    DeadLetterStatus.PARKED,
    DeadLetterStatus.RESOLVED,
    DeadLetterStatus.DISCARDED,
    DeadLetterStatus.ARCHIVED,
]
AUTO_RETRY_BATCH = 1000


def auto_retry_candidates(source: Source, *, now=None):
    """New failures of ``source`` due for an automatic retry.

    A message that failed again after a redrive comes back as a new row carrying
    ``x-retry-count``; the policy retries while that count is below the source's limit, waiting
    ``backoff * 2**retry_count`` after it was harvested. Error groups can opt out (or in).
    Messages with no recorded origin are never candidates: they need a destination, which only
    a person can give (:func:`auto_retry_held`).
    """
    return _due(source, now=now).exclude(routes.needs_destination_q())


def auto_retry_held(source: Source, *, now=None):
    """Due messages of ``source`` the policy holds back because they need a destination."""
    return _due(source, now=now).filter(routes.needs_destination_q())


def _due(source: Source, *, now=None):
    now = now or timezone.now()
    qs = DeadLetter.objects.filter(
        source=source,
        status=DeadLetterStatus.NEW,
        redrive_count=0,
        retry_count__lt=source.auto_retry_max_attempts,
        payload_available=True,
    )
    if source.auto_retry:
        qs = qs.exclude(error_group__auto_retry=False)
    else:
        qs = qs.filter(error_group__auto_retry=True)
    due = Q()
    for attempt in range(source.auto_retry_max_attempts):
        wait = timedelta(seconds=source.auto_retry_backoff_seconds * 2**attempt)
        due |= Q(retry_count=attempt, harvested_at__lte=now - wait)
    return qs.filter(due).order_by("id")


def auto_retry_run(*, now=None) -> list[int]:
    """Create one redrive job per source with due messages; returns the job ids."""
    jobs = []
    sources = (
        Source.objects.filter(Q(auto_retry=True) | Q(error_groups__auto_retry=True))
        .select_related("connection")
        .distinct()
    )
    for source in sources:
        _record_held(source, now=now)
        ids = list(auto_retry_candidates(source, now=now).values_list("id", flat=True)[:AUTO_RETRY_BATCH])
        if not ids:
            continue
        try:
            job = redrive_job_create(actor=None, ids=ids, batch_size=100)
        except RedriveError as exc:
            log.info("auto-retry for %s skipped: %s", source.name, exc)
            continue
        audit_record(action="policy.auto_retry", target=job, count=job.total, detail={"source": source.name})
        jobs.append(job.pk)
    return jobs


def _record_held(source: Source, *, now=None) -> None:
    """Keep ``Source.auto_retry_held`` current; say why once, when more messages are held than
    before (an audit event and a log line), not on every run."""
    held = auto_retry_held(source, now=now).count()
    before = source.auto_retry_held
    if held == before:
        return
    Source.objects.filter(pk=source.pk).update(auto_retry_held=held)
    if held > before:
        reason = routes.needs_reason(source.connection.kind)
        log.warning("auto-retry for %s holds back %d message(s): %s", source.name, held, reason)
        audit_record(
            action="policy.auto_retry.held",
            target=source,
            count=held,
            detail={"source": source.name, "reason": reason, "newly_held": held - before},
        )


def retention_purge(*, days: int, now=None, chunk: int = 5000) -> int:
    """Delete dead letters in a terminal state (:data:`PURGEABLE`) that failed more than ``days``
    ago, except those an active redrive job still holds (it is about to send them). A partition
    of the bodies whose every row may go is removed whole (``partitions.partition_purge``: no
    row-by-row delete, no dead tuples left to vacuum); the rest is deleted in chunks."""
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    total, dropped = 0, []
    for partition in partitions.partitions_behind():
        removed = partitions.partition_purge(partition=partition, cutoff=cutoff, statuses=PURGEABLE)
        if removed is not None:
            total += removed.total()
            dropped.append(partition.name)
    while True:
        ids = list(
            DeadLetterState.objects.filter(status__in=PURGEABLE, failed_at__lt=cutoff)
            .exclude(Exists(RedriveAttempt.objects.filter(dead_letter=OuterRef("pk"), holds=True)))
            .values_list("id", flat=True)[:chunk]
        )
        if not ids:
            break
        with transaction.atomic():
            # lock what is deleted, so the purged counter counts exactly these rows per source
            doomed = DeadLetterState.objects.select_for_update().filter(pk__in=ids).order_by()
            by_source = Counter(doomed.values_list("source_id", flat=True))
            DeadLetter.objects.filter(pk__in=ids).delete()
            counters_add(name=CounterName.PURGED, by_source=by_source)
        total += len(ids)
        if len(ids) < chunk:
            break
    if total:
        audit_record(
            action="retention.purge",
            count=total,
            detail={"days": days, "before": cutoff.isoformat(), "partitions_dropped": dropped},
        )
    return total
