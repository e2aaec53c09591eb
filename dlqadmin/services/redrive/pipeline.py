"""One ``redrive_job_process`` call as a pipeline of chunks (:mod:`dlqadmin.services.redrive.send`):
while the broker confirms chunk *k* (on the process's broker loop, over a kept connection),
chunk *k-1* is recorded (by a second thread, on its own database connection) and chunk *k+1* is
claimed. Only one chunk is ever being published. Every chunk the pipeline holds (claimed, in
flight, confirmed, being recorded) keeps its lease: the calling thread renews them whenever it
waits (for the broker, for the velocity limit), so a long broker outage never lets another
worker take a chunk of a worker that is alive.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import time

from django.db import connection as db_connection
from django.db import connections as db_connections

from brokers.base import ConnectionConfig
from dlqadmin import live
from dlqadmin.models import RUNNABLE_JOB_STATUSES, RedriveJob
from dlqadmin.services.redrive import claim as redrive_claim
from dlqadmin.services.redrive import send as chunks
from dlqadmin.services.redrive import velocity
from dlqadmin.services.redrive.lease import Keeper

log = logging.getLogger("dlqadmin.services.redrive_worker")

#: at most one live progress event per job this often during a run (plus one at the end).
PROGRESS_SECONDS = 0.5
#: claim chunks tried in a row when each held nothing to send (all busy or loop-guarded)
_CLAIM_TRIES = 5


def _status(job: RedriveJob) -> str | None:
    return RedriveJob.objects.filter(pk=job.pk).values_list("status", flat=True).first()


class Pipeline:
    """The state of one ``redrive_job_process`` call: a chunk ``ready`` (claimed, not started),
    one ``publishing``, one ``confirmed`` (answered by the broker, not yet recorded) and one
    ``recording``.

    The outcomes are recorded by a second thread on its own database connection, so recording
    chunk *k-1* and claiming chunk *k+1* run in two server processes at once. The next chunk is
    handed over only after the previous one is recorded. Inside an open transaction (a test
    case's) everything is recorded on the calling thread."""

    def __init__(self, job: RedriveJob, seconds: float):
        from dlqadmin.services.redrive.worker import _chunk_size, lanes_for

        self.job, self.size, self.velocity = job, _chunk_size(job), job.velocity
        self.lanes = lanes_for(job)
        self.deadline = time.monotonic() + seconds
        self.configs: dict[int, ConnectionConfig] = {}
        self.ready: chunks.Chunk | None = None
        self.publishing: chunks.Chunk | None = None
        self.confirmed: chunks.Chunk | None = None
        self.recording: concurrent.futures.Future | None = None
        self.recording_chunk: chunks.Chunk | None = None
        self.processed, self.next_start, self.progress_at = 0, 0.0, time.monotonic()
        self.drained = self.stopped = False
        self.claiming = job.claiming
        self.keeper = Keeper(job.pk, self._tokens)
        self.recorder: concurrent.futures.ThreadPoolExecutor | None = None
        if not db_connection.in_atomic_block:
            self.recorder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="redrive-record")

    def _tokens(self) -> list:
        recording = self.recording_chunk if self.recording and not self.recording.done() else None
        held = (self.ready, self.publishing, self.confirmed, recording)
        return [chunk.token for chunk in held if chunk is not None]

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
                self.confirmed.results(self.keeper)  # wait for the broker, leases renewed
            if self.ready is not None and self._paced():
                self._start()
            self._record()
            if self.publishing is not None and time.monotonic() < self.deadline:
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

    def _paced(self) -> bool:
        """Reserve the ready chunk's start in the job's velocity schedule (shared by every worker
        on the job, :mod:`dlqadmin.services.redrive.velocity`) and wait for it, recording the
        confirmed chunk first. A start beyond this call's time slice is not reserved: the chunk
        goes back to pending and ``next_start`` says when to come back."""
        if not self.velocity:
            return True
        left = max(0.0, self.deadline - time.monotonic())
        ok, wait = velocity.reserve(
            job_id=self.job.pk,
            count=len(self.ready.items),
            velocity=self.velocity,
            lanes=self.lanes,
            max_wait=left,
        )
        if not ok:
            chunks.unclaim(self.ready)
            self.ready = None
            self.next_start = time.monotonic() + wait
            return False
        if wait > 0:
            self._record()  # before waiting: only the chunk in flight stays unrecorded
            self._recorded()
            self.keeper.wait(seconds=wait)
        return True

    def _start(self) -> None:
        chunk, self.ready = self.ready, None
        if _status(self.job) not in RUNNABLE_JOB_STATUSES:  # paused or cancelled since it was claimed
            chunks.unclaim(chunk)
            self.stopped = True
            return
        chunk.start(self.configs)
        self.publishing = chunk

    def _record(self) -> None:
        chunk, self.confirmed = self.confirmed, None
        if chunk is None:
            return
        self._recorded()
        if self.recorder is None:
            chunks.record(chunk, chunk.results())
        else:
            self.recording_chunk = chunk
            self.recording = self.recorder.submit(chunks.record, chunk, chunk.results())
        self.processed += len(chunk.items)
        if time.monotonic() - self.progress_at >= PROGRESS_SECONDS:
            self.job.refresh_from_db()
            live.job_progress(self.job)
            self.progress_at = time.monotonic()

    def _recorded(self) -> None:
        """Wait until the chunk being recorded is (raises what recording it raised)."""
        recording, self.recording = self.recording, None
        try:
            if recording is not None:
                self.keeper.wait(recording)
                recording.result()
        finally:
            self.recording_chunk = None

    def _close(self) -> None:
        if self.recorder is not None:
            with contextlib.suppress(Exception):
                self.recorder.submit(db_connections.close_all).result()
            self.recorder.shutdown()

    def abandon(self) -> None:
        """After an error: record what the broker answered, give back the chunk not started
        (best effort: when the database is what failed, the lease expiry does it)."""
        with contextlib.suppress(Exception):
            self._recorded()
        for chunk in (self.confirmed, self.publishing, self.ready):
            if chunk is None:
                continue
            try:
                if chunk is self.ready:
                    chunks.unclaim(chunk)
                else:
                    chunks.record(chunk, chunk.results())
            except Exception:  # noqa: BLE001, PERF203 - the original error is the one to report
                log.warning("redrive job %s: could not settle a chunk in flight", self.job.pk, exc_info=True)
