"""Celery tasks: ids in, one service call, retry policy declared here."""

from __future__ import annotations

from celery import shared_task

from dlqadmin.services import redrive_worker


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def redrive_job_run(job_id: int) -> None:
    """Process one chunk of a redrive job, then re-enqueue itself (honouring the velocity)."""
    result = redrive_worker.redrive_job_step(job_id=job_id)
    if result.more:
        redrive_job_run.apply_async(args=[job_id], countdown=result.delay)


@shared_task(ignore_result=True)
def redrive_jobs_watchdog() -> int:
    """Periodic (beat): re-enqueue jobs whose worker died mid-chunk."""
    return redrive_worker.redrive_jobs_watchdog()
