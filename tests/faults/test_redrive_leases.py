"""Redrive ownership with real Celery worker processes and real RabbitMQ, each interleaving
forced: two jobs over the same messages (the issue's report), a worker killed with -9 mid-chunk,
and a broker that hangs for three leases while the worker holding the chunk is alive.

Deliveries are counted on the destination queue: "exactly once" means each body arrived once.
Leases are short (``DLQADMIN_STALE_CLAIM_SECONDS``) so every test stays within seconds.
"""

from __future__ import annotations

import time

import pytest
from rest_framework.test import APIClient

from dlqadmin.models import (
    DeadLetter,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveAttemptStatus,
    RedriveJob,
    RedriveJobStatus,
)
from dlqadmin.services.redrive.jobs import redrive_job_create
from dlqadmin.services.redrive.worker import enqueue, redrive_jobs_watchdog
from dlqadmin.services.tokens import token_create
from tests.support import rabbit
from tests.support.processes import wait_until
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

URL = "/api/v1/redrives/"


@pytest.fixture
def api(operator):
    _, key = token_create(user=operator, name="leases")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def fresh(job_id: int) -> RedriveJob:
    return RedriveJob.objects.get(pk=job_id)


def finished(*job_ids: int):
    return lambda: all(fresh(pk).finished_at is not None for pk in job_ids)


def bodies(count: int) -> list[bytes]:
    return sorted(f"msg-{i}".encode() for i in range(count))


def exactly_once_each(top, count: int) -> None:
    arrived = sorted(m.body for m in rabbit.drain(top.work_queue))
    assert arrived == bodies(count), f"{len(arrived)} deliveries for {count} messages"


def test_a_second_post_over_a_running_filter_job_is_refused_and_each_message_arrives_once(
    harvested, api, workers, settings
):
    """The report: a filter job at 10/s in chunks of 5 is running; the same 60 ids are posted."""
    settings.DLQADMIN_STALE_CLAIM_SECONDS = 2
    source, top = harvested(60)
    workers(DLQADMIN_STALE_CLAIM_SECONDS="2")
    body = {"filter": {"source": [str(source.pk)]}, "velocity": 10, "batch_size": 5}
    created = api.post(URL, body, format="json")
    assert created.status_code == 201, created.content
    job_a = created.json()["id"]
    assert wait_until(lambda: fresh(job_a).succeeded >= 5, 30, 0.05), fresh(job_a).status
    assert fresh(job_a).succeeded < 60, "job A finished before the second post; it proves nothing"

    ids = list(source.dead_letters.values_list("id", flat=True))
    second = api.post(URL, {"ids": ids, "batch_size": 5}, format="json")
    assert second.status_code == 409, second.content
    assert f"already in an active redrive job (#{job_a})" in second.json()["error"]

    assert wait_until(finished(job_a), 30, 0.2)
    job = fresh(job_a)
    assert (job.status, job.total, job.succeeded, job.skipped) == (RedriveJobStatus.COMPLETED, 60, 60, 0)
    assert RedriveJob.objects.count() == 1
    exactly_once_each(top, 60)


def test_two_jobs_claiming_the_same_messages_with_two_workers_send_each_once(
    harvested, api, workers, settings
):
    """The filter job's request claims 20; the ids job takes the other 40 before the worker gets
    to them; the filter job's worker then finds them busy in the ids job."""
    settings.DLQADMIN_REDRIVE_CLAIM_IN_REQUEST = 20
    source, top = harvested(60)
    body = {"filter": {"source": [str(source.pk)]}, "velocity": 10, "batch_size": 5}
    job_a = api.post(URL, body, format="json").json()["id"]
    ids = list(source.dead_letters.values_list("id", flat=True))
    second = api.post(URL, {"ids": ids, "velocity": 10, "batch_size": 5}, format="json")
    assert second.status_code == 201, second.content
    job_b = second.json()["id"]
    workers(DLQADMIN_STALE_CLAIM_SECONDS="2")
    workers(DLQADMIN_STALE_CLAIM_SECONDS="2")

    assert wait_until(finished(job_a, job_b), 45, 0.2), (fresh(job_a).status, fresh(job_b).status)
    a, b = fresh(job_a), fresh(job_b)
    assert (a.total, a.succeeded, a.failed, a.skipped) == (60, 20, 0, 40)
    assert (b.total, b.succeeded, b.failed, b.skipped) == (60, 40, 0, 20)
    skips = {a.pk: f"busy in job #{b.pk}", b.pk: f"busy in job #{a.pk}"}
    for job in (a, b):
        reasons = RedriveAttempt.objects.filter(job=job, status=RedriveAttemptStatus.SKIPPED)
        assert set(reasons.values_list("error", flat=True)) == {skips[job.pk]}
    detail = api.get(f"{URL}{job_b}/").json()
    assert {s["reason"] for s in detail["skips"]} == {f"busy in job #{job_a}"} and len(detail["skips"]) == 20
    exactly_once_each(top, 60)
    assert set(DeadLetter.objects.filter(source=source).values_list("status", "redrive_count")) == {
        (DeadLetterStatus.REDRIVEN, 1)
    }


def test_a_worker_killed_mid_chunk_is_taken_over_only_after_its_lease_expired(harvested, workers, settings):
    settings.DLQADMIN_STALE_CLAIM_SECONDS = 2
    source, top = harvested(30)
    env = {"DLQADMIN_STALE_CLAIM_SECONDS": "2", "CELERY_VISIBILITY_TIMEOUT": "3"}
    first = workers(**env)
    job = redrive_job_create(
        ids=list(source.dead_letters.values_list("id", flat=True)), velocity=6, batch_size=50
    )
    claimed = RedriveAttempt.objects.filter(job=job, status=RedriveAttemptStatus.CLAIMED)
    assert wait_until(lambda: fresh(job.pk).succeeded >= 6 and claimed.exists(), 30, 0.02)
    first.kill9()
    held = {a.pk: (a.lease_token, a.lease_expires_at) for a in claimed}
    assert held and fresh(job.pk).succeeded < 30, "nothing was in flight when the worker died"
    expired_at = max(expiry for _, expiry in held.values())
    workers(**env)  # at once: it must still wait for the lease

    # the killed task comes back (visibility timeout) or the watchdog hands the job out again
    assert wait_until(lambda: (redrive_jobs_watchdog(), finished(job.pk)())[1], 60, 0.3)
    job = fresh(job.pk)
    assert (job.status, job.total, job.succeeded, job.failed, job.skipped) == (
        RedriveJobStatus.COMPLETED,
        30,
        30,
        0,
        0,
    )
    for attempt in RedriveAttempt.objects.filter(pk__in=held):
        assert attempt.tries == 2 and attempt.claimed_at >= expired_at, (attempt.claimed_at, expired_at)
    assert RedriveAttempt.objects.filter(job=job, tries=1).count() == 30 - len(held)
    assert (
        DeadLetter.objects.filter(source=source, status=DeadLetterStatus.REDRIVEN, redrive_count=1).count()
        == 30
    )
    arrived = [m.body for m in rabbit.drain(top.work_queue)]
    assert sorted(set(arrived)) == bodies(30)  # at least once each
    assert len(arrived) <= 30 + len(held)  # only what the dead worker held can arrive twice


def test_a_hanging_broker_does_not_let_a_second_worker_take_a_live_workers_chunk(
    harvested, workers, settings
):
    """The broker hangs (every byte held) for three leases while the worker holding both chunks
    is alive and waiting for its confirms; a second worker is handed the job again and again.
    The owner keeps renewing: nobody takes over, each message arrives once, none is failed."""
    settings.DLQADMIN_STALE_CLAIM_SECONDS = 2
    proxy = TcpProxy("127.0.0.1", 5672).start()
    try:
        source, top = harvested(10, url=f"amqp://127.0.0.1:{proxy.port}/")
        env = {"DLQADMIN_STALE_CLAIM_SECONDS": "2"}
        owner = workers(**env)
        owner.wait_for_log("ready.", 30)
        proxy.pause()
        job = redrive_job_create(ids=list(source.dead_letters.values_list("id", flat=True)), batch_size=5)
        claimed = RedriveAttempt.objects.filter(job=job, status=RedriveAttemptStatus.CLAIMED)
        assert wait_until(lambda: claimed.count() == 10, 20, 0.05), owner.output()[-2000:]
        tokens = dict(claimed.values_list("pk", "lease_token"))
        other = workers(**env)
        other.wait_for_log("ready.", 30)
        hold_until = time.monotonic() + 3 * settings.DLQADMIN_STALE_CLAIM_SECONDS
        while time.monotonic() < hold_until:  # the outage lasts; the job is handed out again
            enqueue(job.pk)
            assert dict(claimed.values_list("pk", "lease_token")) == tokens, "a live owner was taken over"
            time.sleep(0.25)
        assert other.output().count("redrive_job_run") >= 2, other.output()[-2000:]
        proxy.resume()

        assert wait_until(finished(job.pk), 40, 0.2), (fresh(job.pk).status, owner.output()[-3000:])
        job = fresh(job.pk)
        assert (job.status, job.succeeded, job.failed) == (RedriveJobStatus.COMPLETED, 10, 0)
        attempts = RedriveAttempt.objects.filter(job=job)
        assert set(attempts.values_list("status", "tries")) == {(RedriveAttemptStatus.SUCCEEDED, 1)}
        assert "refused" not in owner.output()
        exactly_once_each(top, 10)
    finally:
        proxy.close()
