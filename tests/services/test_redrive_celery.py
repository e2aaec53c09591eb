"""Redrive jobs through a real Celery worker process (eager mode hides bugs), including kill -9."""

import time

import pytest

from dlqadmin.models import DeadLetter, DeadLetterStatus, RedriveAttempt, RedriveAttemptStatus
from dlqadmin.services.redrive.jobs import redrive_job_create
from dlqadmin.services.redrive.worker import redrive_jobs_watchdog
from tests.support import rabbit
from tests.support.processes import start_celery_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def workers(celery_queue, tmp_path):
    started = []

    def start():
        worker = start_celery_worker(
            celery_queue,
            tmp_path / "worker.log",
            CELERY_VISIBILITY_TIMEOUT="3",
            DLQADMIN_STALE_CLAIM_SECONDS="2",
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.alive():
            worker.stop()
    print((tmp_path / "worker.log").read_text(errors="replace")[-3000:])


@pytest.fixture
def stored(harvested):
    return harvested


def wait_for(predicate, timeout, tick=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick:
            tick()
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_worker_process_runs_a_job_to_completion(stored, workers):
    source, top = stored(20)
    workers()
    job = redrive_job_create(ids=list(source.dead_letters.values_list("id", flat=True)), batch_size=5)

    def done():
        job.refresh_from_db()
        return job.status == "completed"

    assert wait_for(done, 60), (job.status, job.succeeded)
    assert (job.succeeded, job.failed, job.skipped) == (20, 0, 0)
    assert sorted(m.body for m in rabbit.drain(top.work_queue)) == sorted(
        f"msg-{i}".encode() for i in range(20)
    )


def test_killing_the_worker_mid_job_loses_nothing_and_counts_nothing_twice(stored, workers, settings):
    settings.DLQADMIN_STALE_CLAIM_SECONDS = 2
    source, top = stored(30)
    first = workers()
    job = redrive_job_create(
        ids=list(source.dead_letters.values_list("id", flat=True)), velocity=6, batch_size=50
    )

    def some_progress():
        job.refresh_from_db()
        return job.succeeded >= 6

    assert wait_for(some_progress, 30), job.succeeded
    first.kill9()
    job.refresh_from_db()
    assert job.succeeded < 30, "the job finished before the worker was killed; the test proves nothing"
    workers()

    def finished():
        job.refresh_from_db()
        return job.status == "completed"

    assert wait_for(finished, 90, tick=redrive_jobs_watchdog), (job.status, job.succeeded, job.failed)
    assert (job.succeeded, job.failed, job.skipped, job.total) == (30, 0, 0, 30)
    assert RedriveAttempt.objects.filter(job=job, status=RedriveAttemptStatus.SUCCEEDED).count() == 30
    assert (
        DeadLetter.objects.filter(source=source, status=DeadLetterStatus.REDRIVEN, redrive_count=1).count()
        == 30
    )
    arrived = [m.body for m in rabbit.drain(top.work_queue)]
    assert set(arrived) == {f"msg-{i}".encode() for i in range(30)}  # at least once each
    assert len(arrived) <= 30 + 6  # at most the chunk in flight was sent twice
