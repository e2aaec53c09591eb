"""Redrive job processing: one chunk at a time, confirmed publishes, exact counters.

``redrive_job_step`` (called by the Celery task) claims the next chunk of attempts with
``SELECT ... FOR UPDATE SKIP LOCKED``, publishes them through the adapter and records each
outcome. A message is marked redriven only after the broker confirmed it. Transient broker
errors are retried with exponential backoff; permanent ones fail that message and move on.
Attempts claimed by a worker that died are reclaimed after ``DLQADMIN_STALE_CLAIM_SECONDS``; outcome
updates are conditional on the claim, so nothing is counted twice.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

import brokers
from brokers.base import BrokerError, Destination, HeaderPolicy, Origin, RedriveMessage, RedriveOutcome
from dlqadmin import live
from dlqadmin.models import (
    DeadLetter,
    DeadLetterRevision,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveAttemptStatus,
    RedriveJob,
    RedriveJobStatus,
)
from dlqadmin.services import alerts
from dlqadmin.services.connections import connection_config

log = logging.getLogger(__name__)

TRANSIENT_RETRIES = 4
CLAIM_CHUNK = 1000


def enqueue(job_id: int, countdown: float = 0) -> None:
    from dlqadmin.tasks import redrive_job_run

    redrive_job_run.apply_async(args=[job_id], countdown=countdown)


@dataclass
class StepResult:
    processed: int = 0
    more: bool = False
    delay: float = 0.0


def finish(job: RedriveJob, status: str, error: str = "") -> None:
    now = timezone.now()
    RedriveJob.objects.filter(pk=job.pk).update(status=status, finished_at=now, updated_at=now, error=error)
    job.refresh_from_db()
    alerts.alerts_on_job_finished(job=job)


def _release_pending(job: RedriveJob, reason: str) -> int:
    """Give back messages the job will not send (cancel): restore their previous status."""
    released = 0
    pending = RedriveAttempt.objects.filter(job=job, status__in=[RedriveAttemptStatus.PENDING])
    for attempt in pending.iterator(chunk_size=CLAIM_CHUNK):
        with transaction.atomic():
            if RedriveAttempt.objects.filter(pk=attempt.pk, status=RedriveAttemptStatus.PENDING).update(
                status=RedriveAttemptStatus.SKIPPED, error=reason, finished_at=timezone.now()
            ):
                DeadLetter.objects.filter(pk=attempt.dead_letter_id, status=DeadLetterStatus.QUEUED).update(
                    status=attempt.previous_status or DeadLetterStatus.NEW
                )
                released += 1
    if released:
        RedriveJob.objects.filter(pk=job.pk).update(skipped=F("skipped") + released)
    return released


def redrive_job_step(*, job_id: int) -> StepResult:
    """Process one chunk of ``job_id``. Idempotent and safe to run concurrently."""
    job = RedriveJob.objects.get(pk=job_id)
    if job.status == RedriveJobStatus.CANCELLING:
        _release_pending(job, "cancelled")
        if not RedriveAttempt.objects.filter(job=job, status=RedriveAttemptStatus.CLAIMED).exists():
            finish(job, RedriveJobStatus.CANCELLED)
        job.refresh_from_db()
        live.job_progress(job)
        return StepResult()
    if job.status not in (RedriveJobStatus.PENDING, RedriveJobStatus.RUNNING):
        return StepResult()  # paused or finished: resume re-enqueues
    if job.status == RedriveJobStatus.PENDING:
        RedriveJob.objects.filter(pk=job.pk, status=RedriveJobStatus.PENDING).update(
            status=RedriveJobStatus.RUNNING, started_at=timezone.now()
        )
    RedriveJob.objects.filter(pk=job.pk).update(updated_at=timezone.now())
    _reclaim_stale(job)
    size = job.batch_size if not job.velocity else max(1, min(job.batch_size, math.ceil(job.velocity)))
    attempts = _claim_attempts(job, size)
    if not attempts:
        if not RedriveAttempt.objects.filter(job=job, status=RedriveAttemptStatus.CLAIMED).exists():
            finish(job, RedriveJobStatus.COMPLETED)
            job.refresh_from_db()
            live.job_progress(job)
        return StepResult()
    started = time.monotonic()
    _send(job, attempts)
    job.refresh_from_db()
    live.job_progress(job)
    delay = 0.0
    if job.velocity:
        delay = max(0.0, len(attempts) / job.velocity - (time.monotonic() - started))
    return StepResult(processed=len(attempts), more=True, delay=delay)


def _reclaim_stale(job: RedriveJob) -> None:
    cutoff = timezone.now() - timedelta(seconds=settings.DLQADMIN_STALE_CLAIM_SECONDS)
    stale = Q(claimed_at__lt=cutoff) | Q(claimed_at__isnull=True)
    n = RedriveAttempt.objects.filter(stale, job=job, status=RedriveAttemptStatus.CLAIMED).update(
        status=RedriveAttemptStatus.PENDING
    )
    if n:
        log.warning("redrive job %s: reclaimed %d attempt(s) from a worker that stopped", job.pk, n)


def _claim_attempts(job: RedriveJob, size: int) -> list[RedriveAttempt]:
    with transaction.atomic():
        ids = list(
            RedriveAttempt.objects.select_for_update(skip_locked=True)
            .filter(job=job, status=RedriveAttemptStatus.PENDING)
            .order_by("id")
            .values_list("id", flat=True)[:size]
        )
        RedriveAttempt.objects.filter(pk__in=ids).update(
            status=RedriveAttemptStatus.CLAIMED, claimed_at=timezone.now(), tries=F("tries") + 1
        )
    return list(
        RedriveAttempt.objects.filter(pk__in=ids)
        .select_related("dead_letter__source__connection")
        .order_by("id")
    )


def _destination(job: RedriveJob) -> Destination | None:
    return Destination(**job.destination) if job.destination else None


def _policy(job: RedriveJob) -> HeaderPolicy:
    return HeaderPolicy(**job.header_policy) if job.header_policy else HeaderPolicy()


def _latest_revisions(job: RedriveJob, attempts: list[RedriveAttempt]) -> dict[int, DeadLetterRevision]:
    if not job.use_revisions:
        return {}
    latest: dict[int, DeadLetterRevision] = {}
    ids = [a.dead_letter_id for a in attempts]
    for rev in DeadLetterRevision.objects.filter(dead_letter_id__in=ids).order_by("created_at", "id"):
        latest[rev.dead_letter_id] = rev
    return latest


def _message(attempt: RedriveAttempt, revision: DeadLetterRevision | None = None) -> RedriveMessage:
    row = attempt.dead_letter
    extra = dict(row.origin_extra or {})
    return RedriveMessage(
        ref=attempt.pk,
        redrive_id=str(attempt.redrive_id),
        payload=bytes(revision.payload if revision else row.payload),
        headers=(revision.headers if revision else row.headers) or [],
        properties=row.properties or {},
        key=bytes(row.key) if row.key is not None else None,
        origin=Origin(
            exchange=row.origin_exchange,
            routing_key=row.origin_routing_key,
            routing_keys=list(extra.pop("routing_keys", []) or []),
            queue=row.origin_queue,
            topic=row.origin_topic,
            partition=row.origin_partition,
            offset=row.origin_offset,
            stream=row.origin_stream,
            subject=row.origin_subject,
            seq=row.origin_seq,
            extra=extra,
        ),
        retry_count=row.retry_count,
    )


def _send(job: RedriveJob, attempts: list[RedriveAttempt]) -> None:
    unavailable = [a for a in attempts if not a.dead_letter.payload_available]
    _record(
        job,
        [
            (
                attempt,
                RedriveOutcome(
                    ref=attempt.pk,
                    ok=False,
                    permanent=True,
                    error="payload no longer available on the broker; nothing to send",
                ),
            )
            for attempt in unavailable
        ],
    )
    by_connection: dict[int, list[RedriveAttempt]] = {}
    for attempt in attempts:
        if attempt.dead_letter.payload_available:
            by_connection.setdefault(attempt.dead_letter.source.connection_id, []).append(attempt)
    for group in by_connection.values():
        outcomes = _publish_with_retry(job, group)
        by_ref = {o.ref: o for o in outcomes}
        _record(
            job,
            [
                (
                    attempt,
                    by_ref.get(attempt.pk)
                    or RedriveOutcome(ref=attempt.pk, ok=False, error="no outcome reported"),
                )
                for attempt in group
            ],
        )


async def _redrive_once(config, messages, destination, policy) -> list[RedriveOutcome]:
    async with brokers.get_adapter(config) as adapter:
        return await adapter.redrive(messages, destination=destination, header_policy=policy)


def _publish_with_retry(job: RedriveJob, group: list[RedriveAttempt]) -> list[RedriveOutcome]:
    config = connection_config(group[0].dead_letter.source.connection)
    destination, policy = _destination(job), _policy(job)
    revisions = _latest_revisions(job, group)
    for attempt in group:
        attempt.revision = revisions.get(attempt.dead_letter_id)
    pending = {a.pk: _message(a, a.revision) for a in group}
    final: dict[int, RedriveOutcome] = {}
    for attempt_no in range(TRANSIENT_RETRIES + 1):
        try:
            outcomes = brokers.run(_redrive_once, config, list(pending.values()), destination, policy)
        except BrokerError as exc:
            outcomes = [
                RedriveOutcome(ref=ref, ok=False, permanent=exc.permanent, error=str(exc)) for ref in pending
            ]
        for outcome in outcomes:
            if outcome.ok or outcome.permanent or attempt_no == TRANSIENT_RETRIES:
                final[outcome.ref] = outcome
                pending.pop(outcome.ref, None)
        if not pending:
            break
        delay = min(10.0, 0.25 * 2**attempt_no)
        log.info("redrive job %s: %d transient failure(s), retrying in %.2fs", job.pk, len(pending), delay)
        time.sleep(delay)
    return list(final.values())


def _record(job: RedriveJob, results: list[tuple[RedriveAttempt, RedriveOutcome]]) -> None:
    """Record a chunk's outcomes in one transaction (one commit per chunk, not per message).

    Each attempt is updated only while it is still CLAIMED, so an attempt another worker already
    recorded (or reclaimed) is skipped and nothing is counted twice."""
    if not results:
        return
    now = timezone.now()
    rows = []
    for attempt, outcome in results:
        status = RedriveAttemptStatus.SUCCEEDED if outcome.ok else RedriveAttemptStatus.FAILED
        error = (
            outcome.error
            if outcome.ok
            else f"{'permanent' if outcome.permanent else 'transient'}: {outcome.error}"
        )
        rows.append(
            (
                attempt.pk,
                status,
                error[:2000],
                outcome.destination[:600],
                outcome.position[:200],
                attempt.revision_id,
            )
        )
    letters = {attempt.pk: attempt.dead_letter_id for attempt, _ in results}
    with transaction.atomic():
        recorded = _update_claimed(rows, now)
        sent, failed = [], []
        for pk, status, *_ in rows:
            if pk in recorded:
                (sent if status == RedriveAttemptStatus.SUCCEEDED else failed).append(letters[pk])
        if sent:
            DeadLetter.objects.filter(pk__in=sent).update(
                status=DeadLetterStatus.REDRIVEN, redrive_count=F("redrive_count") + 1, last_redriven_at=now
            )
        if failed:
            DeadLetter.objects.filter(pk__in=failed).update(status=DeadLetterStatus.FAILED)
        if recorded:
            RedriveJob.objects.filter(pk=job.pk).update(
                succeeded=F("succeeded") + len(sent), failed=F("failed") + len(failed), updated_at=now
            )


def _update_claimed(rows: list[tuple], now) -> set[int]:
    """Set (status, error, destination, broker_position, revision) on each attempt of ``rows``
    that is still CLAIMED; returns the ids updated. One statement on PostgreSQL."""
    if db_connection.vendor != "postgresql":  # the SQLite demo: one conditional UPDATE each
        recorded = set()
        for pk, status, error, destination, position, revision_id in rows:
            if RedriveAttempt.objects.filter(pk=pk, status=RedriveAttemptStatus.CLAIMED).update(
                status=status,
                error=error,
                destination=destination,
                broker_position=position,
                finished_at=now,
                revision_id=revision_id,
            ):
                recorded.add(pk)
        return recorded
    meta = RedriveAttempt._meta
    quote = db_connection.ops.quote_name
    col = {name: quote(meta.get_field(name).column) for name in _RECORDED}
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    sql = (
        f"UPDATE {table} AS a SET {col['status']} = v.status, "  # noqa: S608 - quoted identifiers only
        f"{col['error']} = v.error, {col['destination']} = v.destination, "
        f"{col['broker_position']} = v.position, {col['revision']} = v.revision, {col['finished_at']} = %s "
        "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[]) "
        "AS v(id, status, error, destination, position, revision) "
        f"WHERE a.{pk} = v.id AND a.{col['status']} = %s RETURNING a.{pk}"
    )
    columns = [list(values) for values in zip(*rows, strict=True)]
    with db_connection.cursor() as cursor:
        cursor.execute(sql, [now, *columns, RedriveAttemptStatus.CLAIMED])
        return {pk for (pk,) in cursor.fetchall()}


_RECORDED = ("status", "error", "destination", "broker_position", "revision", "finished_at")


def redrive_jobs_watchdog() -> int:
    """Re-enqueue running jobs that stopped making progress (their worker died). Returns count."""
    cutoff = timezone.now() - timedelta(seconds=settings.DLQADMIN_STALE_CLAIM_SECONDS)
    stale = list(
        RedriveJob.objects.filter(
            status__in=[RedriveJobStatus.PENDING, RedriveJobStatus.RUNNING, RedriveJobStatus.CANCELLING],
            updated_at__lt=cutoff,
        ).values_list("pk", flat=True)
    )
    for pk in stale:
        RedriveJob.objects.filter(pk=pk).update(updated_at=timezone.now())
        enqueue(pk)
    return len(stale)
