"""Redrive job processing: chunk by chunk, confirmed publishes, exact counters.

``redrive_job_process`` (called by the Celery task) works on one job for about
:data:`RUN_SECONDS`, as a pipeline of chunks (:mod:`dlqadmin.services.redrive_chunk`): while the
broker confirms chunk *k* (on the process's broker loop, over a kept connection), chunk *k-1* is
recorded (by a second thread, on its own database connection) and chunk *k+1* is claimed. Only
one chunk is ever being published, and the job's status is read again before each chunk starts,
so pause and cancel take effect within one chunk: the chunk in flight finishes, a chunk claimed
but not started goes back to pending. ``redrive_job_step`` does one chunk, start to end (the CLI,
tests).

A message is marked redriven only after the broker confirmed it. Transient broker errors are
retried with exponential backoff on a new connection; permanent ones fail that message and move
on. Attempts claimed by a worker that died are reclaimed after ``DLQADMIN_STALE_CLAIM_SECONDS``;
outcome updates are conditional on the claim, so nothing is counted twice.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection as db_connection
from django.db import connections as db_connections
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from brokers.base import ConnectionConfig
from dlqadmin import live
from dlqadmin.models import (
    DeadLetter,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveAttemptStatus,
    RedriveJob,
    RedriveJobStatus,
)
from dlqadmin.services import alerts, redrive_claim
from dlqadmin.services import redrive_chunk as chunks
from dlqadmin.services.redrive_chunk import TRANSIENT_RETRIES
from dlqadmin.services.redrive_claim import CLAIM_CHUNK

log = logging.getLogger(__name__)

#: seconds one ``redrive_job_process`` call (one Celery task) keeps taking chunks of a job
#: before it re-enqueues itself, so other jobs and tasks get the worker in turn.
RUN_SECONDS = 2.0
#: at most one live progress event per job this often during a run (plus one at the end).
PROGRESS_SECONDS = 0.5
_RUNNABLE = (RedriveJobStatus.PENDING, RedriveJobStatus.RUNNING)
#: claim chunks tried in a row when each held nothing to send (all busy or loop-guarded)
_CLAIM_TRIES = 5

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


def finish(job: RedriveJob, status: str, error: str = "") -> None:
    now = timezone.now()
    RedriveJob.objects.filter(pk=job.pk).update(status=status, finished_at=now, updated_at=now, error=error)
    job.refresh_from_db()
    alerts.alerts_on_job_finished(job=job)


def _release_pending(job: RedriveJob, reason: str) -> int:
    """Give back messages the job will not send (cancel): restore their previous status. One
    transaction per batch of :data:`CLAIM_CHUNK`; an attempt is released only while pending."""
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
                status=RedriveAttemptStatus.SKIPPED, error=reason, finished_at=timezone.now()
            )
            by_status: dict[str, list[int]] = {}
            for _, letter, previous in rows:
                by_status.setdefault(previous or DeadLetterStatus.NEW, []).append(letter)
            for previous, letters in by_status.items():
                DeadLetter.objects.filter(pk__in=letters, status=DeadLetterStatus.QUEUED).update(
                    status=previous
                )
            RedriveJob.objects.filter(pk=job.pk).update(skipped=F("skipped") + len(rows))
        released += len(rows)


def _cancel(job: RedriveJob) -> StepResult:
    redrive_claim.stop_claiming(job)
    _release_pending(job, "cancelled")
    if not RedriveAttempt.objects.filter(job=job, status=RedriveAttemptStatus.CLAIMED).exists():
        finish(job, RedriveJobStatus.CANCELLED)
    job.refresh_from_db()
    live.job_progress(job)
    return StepResult()


def _begin(job: RedriveJob) -> None:
    """Mark the job running (first time), show it is alive, take back stale claims."""
    now = timezone.now()
    if job.status == RedriveJobStatus.PENDING:
        RedriveJob.objects.filter(pk=job.pk, status=RedriveJobStatus.PENDING).update(
            status=RedriveJobStatus.RUNNING, started_at=now
        )
    RedriveJob.objects.filter(pk=job.pk).update(updated_at=now)
    _reclaim_stale(job)


def _chunk_size(job: RedriveJob) -> int:
    return job.batch_size if not job.velocity else max(1, min(job.batch_size, math.ceil(job.velocity)))


def _drained(job: RedriveJob) -> StepResult:
    """Nothing pending: complete the job unless messages are still to be claimed or another
    worker still holds a chunk."""
    if RedriveJob.objects.filter(pk=job.pk, claim_cursor__isnull=False).exists():
        return StepResult(more=True)
    if not RedriveAttempt.objects.filter(job=job, status=RedriveAttemptStatus.CLAIMED).exists():
        finish(job, RedriveJobStatus.COMPLETED)
        job.refresh_from_db()
        live.job_progress(job)
    return StepResult()


def redrive_job_step(*, job_id: int) -> StepResult:
    """Process one chunk of ``job_id``, start to end. Idempotent and safe to run concurrently."""
    job = RedriveJob.objects.get(pk=job_id)
    if job.status == RedriveJobStatus.CANCELLING:
        return _cancel(job)
    if job.status not in _RUNNABLE:
        return StepResult()  # paused or finished: resume re-enqueues
    _begin(job)
    if job.claiming:
        redrive_claim.claim_next(job)
    chunk = chunks.claim(job, _chunk_size(job))
    if chunk is None:
        return _drained(job)
    chunk.start({})
    chunks.record(job, chunk.results())
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
    one in flight): they are sent again after the stale-claim reclaim (at least once)."""
    job = RedriveJob.objects.get(pk=job_id)
    if job.status not in _RUNNABLE:
        return redrive_job_step(job_id=job_id)  # cancelling: release the rest; paused: nothing
    _begin(job)
    run = _Pipeline(job, seconds)
    try:
        run.run()
    except BaseException:
        run.abandon()
        raise
    if run.drained and not run.stopped:
        _drained(job)
        if job.finished_at is None:  # another worker still holds a chunk; it finishes the job
            job.refresh_from_db()
            live.job_progress(job)
        return StepResult(processed=run.processed)
    job.refresh_from_db()
    live.job_progress(job)
    return StepResult(processed=run.processed, more=True, delay=max(0.0, run.next_start - time.monotonic()))


class _Pipeline:
    """The state of one ``redrive_job_process`` call: a chunk ``ready`` (claimed, not started),
    one ``publishing``, one ``confirmed`` (answered by the broker, not yet recorded) and one
    ``recording``.

    On PostgreSQL the outcomes are recorded by a second thread on its own database connection,
    so recording chunk *k-1* and claiming chunk *k+1* run in two server processes at once. The
    next chunk is handed over only after the previous one is recorded. Inside an open
    transaction (a test case's) or on SQLite everything is recorded on the calling thread."""

    def __init__(self, job: RedriveJob, seconds: float):
        self.job, self.size, self.velocity = job, _chunk_size(job), job.velocity
        self.deadline = time.monotonic() + seconds
        self.configs: dict[int, ConnectionConfig] = {}
        self.ready: chunks.Chunk | None = None
        self.publishing: chunks.Chunk | None = None
        self.confirmed: chunks.Chunk | None = None
        self.recording: concurrent.futures.Future | None = None
        self.processed, self.next_start, self.progress_at = 0, 0.0, time.monotonic()
        self.drained = self.stopped = False
        self.claiming = job.claiming
        self.recorder: concurrent.futures.ThreadPoolExecutor | None = None
        if db_connection.vendor == "postgresql" and not db_connection.in_atomic_block:
            self.recorder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="redrive-record")

    def run(self) -> None:
        try:
            self._run()
            self._recorded()
        finally:
            self._close()

    def _run(self) -> None:
        self._claim()
        while self.ready is not None or self.publishing is not None:
            self.confirmed, self.publishing = self.publishing, None
            if self.confirmed is not None:
                self.confirmed.results()  # wait for the broker
            if self.ready is not None:
                if self.next_start > time.monotonic():
                    self._record()  # before waiting: only the chunk in flight stays unrecorded
                    self._recorded()
                    time.sleep(max(0.0, self.next_start - time.monotonic()))
                self._start()
            self._record()
            now = time.monotonic()
            if self.publishing is not None and now < self.deadline and self.next_start <= self.deadline:
                self._claim()

    def _claim(self) -> None:
        """Take the next pending chunk; while the job's messages are still being claimed, claim
        the next ones first (a claim chunk is larger than a send chunk, so claiming stays ahead)."""
        for _ in range(_CLAIM_TRIES):
            if self.claiming:
                self.claiming = redrive_claim.claim_next(self.job)
            self.ready = chunks.claim(self.job, self.size)
            if self.ready is not None or not self.claiming:
                break
        self.drained = self.ready is None and not self.claiming

    def _start(self) -> None:
        chunk, self.ready = self.ready, None
        if _status(self.job) not in _RUNNABLE:  # paused or cancelled since it was claimed
            chunks.unclaim(chunk)
            self.stopped = True
            return
        chunk.start(self.configs)
        self.publishing = chunk
        if self.velocity:
            self.next_start = chunk.started + len(chunk.items) / self.velocity

    def _record(self) -> None:
        chunk, self.confirmed = self.confirmed, None
        if chunk is None:
            return
        self._recorded()
        if self.recorder is None:
            chunks.record(self.job, chunk.results())
        else:
            self.recording = self.recorder.submit(chunks.record, self.job, chunk.results())
        self.processed += len(chunk.items)
        if time.monotonic() - self.progress_at >= PROGRESS_SECONDS:
            self.job.refresh_from_db()
            live.job_progress(self.job)
            self.progress_at = time.monotonic()

    def _recorded(self) -> None:
        """Wait until the chunk being recorded is (raises what recording it raised)."""
        recording, self.recording = self.recording, None
        if recording is not None:
            recording.result()

    def _close(self) -> None:
        if self.recorder is not None:
            with contextlib.suppress(Exception):
                self.recorder.submit(db_connections.close_all).result()
            self.recorder.shutdown()

    def abandon(self) -> None:
        """After an error: record what the broker answered, give back the chunk not started
        (best effort: when the database is what failed, the stale-claim reclaim does it)."""
        with contextlib.suppress(Exception):
            self._recorded()
        for chunk in (self.confirmed, self.publishing, self.ready):
            if chunk is None:
                continue
            try:
                if chunk is self.ready:
                    chunks.unclaim(chunk)
                else:
                    chunks.record(self.job, chunk.results())
            except Exception:  # noqa: BLE001, PERF203 - the original error is the one to report
                log.warning("redrive job %s: could not settle a chunk in flight", self.job.pk, exc_info=True)


def _reclaim_stale(job: RedriveJob) -> None:
    cutoff = timezone.now() - timedelta(seconds=settings.DLQADMIN_STALE_CLAIM_SECONDS)
    stale = Q(claimed_at__lt=cutoff) | Q(claimed_at__isnull=True)
    n = RedriveAttempt.objects.filter(stale, job=job, status=RedriveAttemptStatus.CLAIMED).update(
        status=RedriveAttemptStatus.PENDING
    )
    if n:
        log.warning("redrive job %s: reclaimed %d attempt(s) from a worker that stopped", job.pk, n)


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
