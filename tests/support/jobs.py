"""Running a redrive job to its end in the test's own thread, one chunk per step."""

from dlqadmin.models import RedriveJob
from dlqadmin.services.redrive.worker import redrive_job_step


def run_to_end(job: RedriveJob, max_steps: int = 1000) -> RedriveJob:
    """Step ``job`` until nothing is left (or ``max_steps``); returns it refreshed."""
    for _ in range(max_steps):
        if not redrive_job_step(job_id=job.pk).more:
            break
    job.refresh_from_db()
    return job
