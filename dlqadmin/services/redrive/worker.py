"""Redrive job processing: chunk by chunk, confirmed publishes, exact counters.

``redrive_job_process`` (called by the Celery task) works on one job for about
:data:`RUN_SECONDS`, as a pipeline of chunks (:mod:`dlqadmin.services.redrive.pipeline` over
:mod:`dlqadmin.services.redrive.send`): while the broker confirms chunk *k*, chunk *k-1* is
recorded and chunk *k+1* is claimed. The job's status is read again before each chunk starts, so
pause and cancel take effect within one chunk: the chunk in flight finishes, a chunk claimed but
not started goes back to pending. ``redrive_job_step`` does one chunk, start to end (the CLI,
tests).

A message is marked redriven only after the broker confirmed it. Transient broker errors are
retried with exponential backoff on a new connection; permanent ones fail that message and move
on. Ownership is explicit (:mod:`dlqadmin.services.redrive.lease`): a chunk is claimed under a
fencing token with a lease its worker renews while it waits; only an expired lease is taken
over, only the owner records outcomes, and a job finishes only when none of its attempts is
pending or claimed. A job whose last attempts are held by another worker is looked at again
when their lease could expire, so a worker that died never leaves a job unfinished.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from dlqadmin import live
from dlqadmin.models import (
    ACTIVE_JOB_STATUSES,
    RUNNABLE_JOB_STATUSES,
    DeadLetterState,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveAttemptStatus,
    RedriveJob,
    RedriveJobStatus,
)
from dlqadmin.services import alerts
from dlqadmin.services.redrive import claim as redrive_claim
from dlqadmin.services.redrive import lease as redrive_lease
from dlqadmin.services.redrive import send as chunks
from dlqadmin.services.redrive.claim import CLAIM_CHUNK
from dlqadmin.services.redrive.lease import ACTIVE_ATTEMPT, Keeper
from dlqadmin.services.redrive.send import TRANSIENT_RETRIES

log = logging.getLogger("dlqadmin.services.redrive_worker")  # the pre-package name, kept for logging configs

#: seconds one ``redrive_job_process`` call (one Celery task) keeps taking chunks of a job
#: before it re-enqueues itself, so other jobs and tasks get the worker in turn.
RUN_SECONDS = 2.0
#: the shortest wait before looking again at a job whose last attempts another worker holds
_RECHECK_MIN = 0.5

__all__ = [
    "CLAIM_CHUNK",
    "RUN_SECONDS",
    "TRANSIENT_RETRIES",
    "StepResult",
    "enqueue",
    "finish",
    "redrive_job_process",
    "redrive_job_step",
    "redrive_jobs_watchdog",
]


def enqueue(job_id: int, countdown: float = 0) -> None:
    from dlqadmin.tasks import redrive_job_run

    redrive_job_run.apply_async(args=[job_id], countdown=countdown)


@dataclass
class StepResult:
    processed: int = 0
    more: bool = False
    delay: float = 0.0


def finish(job: RedriveJob, status: str, error: str = "", *, only_if_drained: bool = False) -> bool:
    """End an active job with ``status`` and release its messages to other jobs (one
    transaction). With ``only_if_drained`` the job ends only if it claims nothing more and none
    of its attempts is pending or claimed (a worker's claim that is not committed yet still
    shows its attempts as pending). The job row is locked first and the attempts checked after,
    in a statement of their own: the worker's claim of the job's next messages holds that lock,
    so whatever it commits is seen. Returns whether the job ended."""
    now = timezone.now()
    with transaction.atomic():
        locked = list(
            RedriveJob.objects.select_for_update()
            .filter(pk=job.pk, status__in=ACTIVE_JOB_STATUSES)
            .values_list("claim_cursor", flat=True)
        )
        if not locked:
            return False
        if only_if_drained and (
            locked[0] is not None
            or RedriveAttempt.objects.filter(job=job, status__in=ACTIVE_ATTEMPT).exists()
        ):
            return False
        RedriveJob.objects.filter(pk=job.pk).update(
            status=status, finished_at=now, updated_at=now, error=error
        )
        redrive_lease.release_holds(job)
    job.refresh_from_db()
    alerts.alerts_on_job_finished(job=job)
    return True


def _release_pending(job: RedriveJob, reason: str) -> int:
    """Give back messages the job will not send (cancel): restore their previous status and let
    other jobs take them. One transaction per batch of :data:`CLAIM_CHUNK`; an attempt is
    released only while pending."""
    released = 0
    while True:
        with transaction.atomic():
            rows = list(
                RedriveAttempt.objects.select_for_update(skip_locked=True)
                .filter(job=job, status=RedriveAttemptStatus.PENDING)
                .order_by("id")
                .values_list("id", "dead_letter_id", "previous_status")[:CLAIM_CHUNK]
            )
            if not rows:
                return released
            RedriveAttempt.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(
                status=RedriveAttemptStatus.SKIPPED, error=reason, finished_at=timezone.now(), holds=False
            )
            by_status: dict[str, list[int]] = {}
            for _, letter, previous in rows:
                by_status.setdefault(previous or DeadLetterStatus.NEW, []).append(letter)
            for previous, letters in by_status.items():
                DeadLetterState.objects.filter(pk__in=letters, status=DeadLetterStatus.QUEUED).update(
                    status=previous
                )
            RedriveJob.objects.filter(pk=job.pk).update(skipped=F("skipped") + len(rows))
        released += len(rows)


def _held_elsewhere(job: RedriveJob) -> StepResult:
    """Attempts of ``job`` are still pending or claimed by another worker: look again when
    their lease could have expired (that worker may die), at the latest after one lease."""
    expiry = redrive_lease.next_expiry(job)
    wait = redrive_lease.lease_seconds() if expiry is None else min(expiry, redrive_lease.lease_seconds())
    return StepResult(more=True, delay=max(_RECHECK_MIN, wait + 0.1))


def _cancel(job: RedriveJob) -> StepResult:
    redrive_claim.stop_claiming(job)
    redrive_lease.reclaim_expired(job)
    _release_pending(job, "cancelled")
    ended = finish(job, RedriveJobStatus.CANCELLED, only_if_drained=True)
    job.refresh_from_db()
    live.job_progress(job)
    return StepResult() if ended or job.status != RedriveJobStatus.CANCELLING else _held_elsewhere(job)


def _begin(job: RedriveJob) -> None:
    """Mark the job running (first time), show it is alive, take back expired claims."""
    now = timezone.now()
    if job.status == RedriveJobStatus.PENDING:
        RedriveJob.objects.filter(pk=job.pk, status=RedriveJobStatus.PENDING).update(
            status=RedriveJobStatus.RUNNING, started_at=now
        )
    RedriveJob.objects.filter(pk=job.pk).update(updated_at=now)
    redrive_lease.reclaim_expired(job)


def _chunk_size(job: RedriveJob) -> int:
    return job.batch_size if not job.velocity else max(1, min(job.batch_size, math.ceil(job.velocity)))


def _drained(job: RedriveJob) -> StepResult:
    """Nothing pending this worker could claim: complete the job unless messages are still to be
    claimed or an attempt is still pending or claimed (another worker holds it)."""
    if RedriveJob.objects.filter(pk=job.pk, claim_cursor__isnull=False).exists():
        return StepResult(more=True)
    if finish(job, RedriveJobStatus.COMPLETED, only_if_drained=True):
        live.job_progress(job)
        return StepResult()
    if _status(job) in RUNNABLE_JOB_STATUSES:
        return _held_elsewhere(job)
    return StepResult(more=_status(job) == RedriveJobStatus.CANCELLING)


def redrive_job_step(*, job_id: int) -> StepResult:
    """Process one chunk of ``job_id``, start to end. Idempotent and safe to run concurrently."""
    job = RedriveJob.objects.get(pk=job_id)
    if job.status == RedriveJobStatus.CANCELLING:
        return _cancel(job)
    if job.status not in RUNNABLE_JOB_STATUSES:
        return StepResult()  # paused or finished: resume re-enqueues
    _begin(job)
    if job.claiming:
        redrive_claim.claim_next(job)
    chunk = chunks.claim(job, _chunk_size(job))
    if chunk is None:
        return _drained(job)
    chunk.start({})
    chunks.record(chunk, chunk.results(Keeper(job.pk, lambda: [chunk.token])))
    job.refresh_from_db()
    live.job_progress(job)
    delay = 0.0
    if job.velocity:
        delay = max(0.0, len(chunk.items) / job.velocity - (time.monotonic() - chunk.started))
    return StepResult(processed=len(chunk.items), more=True, delay=delay)


def _status(job: RedriveJob) -> str | None:
    return RedriveJob.objects.filter(pk=job.pk).values_list("status", flat=True).first()


def redrive_job_process(*, job_id: int, seconds: float = RUN_SECONDS) -> StepResult:
    """Process chunks of ``job_id`` for about ``seconds`` (at least one chunk), pipelined: the
    broker confirms one chunk while the previous one is recorded and the next one claimed.

    Pause / cancel take effect within one chunk: the status is read before each chunk starts
    publishing, and a chunk claimed but not started then goes back to pending. The velocity
    limit paces the start of each chunk. ``more``: call again (after ``delay`` seconds).
    Idempotent and safe to run concurrently (workers claim different chunks). If the worker
    dies, at most two chunks were published but not recorded (the one being recorded and the
    one in flight): they are sent again once their lease expired (at least once)."""
    from dlqadmin.services.redrive.pipeline import Pipeline

    job = RedriveJob.objects.get(pk=job_id)
    if job.status not in RUNNABLE_JOB_STATUSES:
        return redrive_job_step(job_id=job_id)  # cancelling: release the rest; paused: nothing
    _begin(job)
    run = Pipeline(job, seconds)
    try:
        run.run()
    except BaseException:
        run.abandon()
        raise
    if run.drained and not run.stopped:
        result = _drained(job)
        if result.more:
            job.refresh_from_db()
            live.job_progress(job)
        return StepResult(processed=run.processed, more=result.more, delay=result.delay)
    job.refresh_from_db()
    live.job_progress(job)
    return StepResult(processed=run.processed, more=True, delay=max(0.0, run.next_start - time.monotonic()))


def redrive_jobs_watchdog() -> int:
    """Re-enqueue active jobs that stopped making progress (their worker died; nobody renewed a
    lease or recorded a chunk for a lease's time) and settle what no job will settle any more
    (:func:`redrive_lease.release_orphans`). Returns how many jobs were re-enqueued."""
    redrive_lease.release_orphans()
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
