"""The broker stopped in the middle of a redrive job run by a real Celery worker, then started.

A private nats-server (same port and JetStream store when it comes back) receives the redriven
copies. A short outage is bridged by the worker's transient retries: the job completes with
every message redriven. An outage that outlasts the retries fails the chunk in flight with a
clear transient reason and the job carries on once the server is back. Either way a message is
marked redriven only with a PubAck behind it (its copy is in the stream under the redrive's
``Nats-Msg-Id``) and the counters add up.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from dlqadmin.models import (
    DeadLetter,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveAttemptStatus,
    RedriveJob,
    RedriveJobStatus,
    Source,
)
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import source_harvest
from dlqadmin.services.redrive.jobs import redrive_job_create
from tests.conftest import unique
from tests.faults.helpers import nats_app_dlq, nats_stream_messages
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def harvested_source(server, nats_streams, count: int):
    work, dlq, _ = asyncio.run(nats_app_dlq(server.url, nats_streams, count))
    conn = connection_create(name=unique("nats-redrive"), kind="nats", url=server.url)
    source = Source.objects.create(connection=conn, name=dlq, mode="dlq_stream", address=dlq)
    assert source_harvest(source=source).inserted == count
    return source, work


def job_state(job: RedriveJob) -> RedriveJob:
    job.refresh_from_db()
    return job


def check_confirmed(job: RedriveJob, server, work: str) -> list[dict]:
    """Every attempt counted as succeeded has its copy in the stream, at the position its PubAck
    named, under its own redrive id; the counters match the attempts."""
    attempts = RedriveAttempt.objects.filter(job=job)
    succeeded = list(attempts.filter(status=RedriveAttemptStatus.SUCCEEDED))
    assert len(succeeded) == job.succeeded
    assert attempts.filter(status=RedriveAttemptStatus.FAILED).count() == job.failed
    assert attempts.filter(status=RedriveAttemptStatus.SKIPPED).count() == job.skipped
    assert job.succeeded + job.failed + job.skipped == job.total
    unfinished = [RedriveAttemptStatus.PENDING, RedriveAttemptStatus.CLAIMED]
    assert not attempts.filter(status__in=unfinished).exists()
    arrived = asyncio.run(nats_stream_messages(server.url, work))
    assert len(arrived) >= job.succeeded
    by_seq = {m["seq"]: m for m in arrived}
    for attempt in succeeded:
        stream, _, seq = attempt.broker_position.rpartition(":")
        assert stream == work, attempt.broker_position
        copy = by_seq.get(int(seq))
        assert copy is not None, f"attempt {attempt.pk} marked succeeded without a stored copy"
        assert copy["msg_id"] == f"redrive:{attempt.redrive_id}"
        assert bytes(copy["payload"]) == bytes(attempt.dead_letter.payload)
    rows = DeadLetter.objects.filter(pk__in=attempts.values("dead_letter_id"))
    redriven = rows.filter(status=DeadLetterStatus.REDRIVEN, redrive_count=1)
    assert redriven.count() == job.succeeded
    return arrived


def test_short_nats_outage_mid_job_is_bridged_by_retries(private_nats, nats_streams, workers):
    count = 40
    source, work = harvested_source(private_nats, nats_streams, count)
    worker = workers()
    ids = list(source.dead_letters.values_list("id", flat=True))
    job = redrive_job_create(ids=ids, velocity=10, batch_size=5)  # a chunk of 5 every 0.5 s

    assert wait_until(lambda: job_state(job).succeeded >= 10, 45, 0.1), (job.status, worker.log()[-3000:])
    private_nats.stop()
    at_stop = job_state(job).succeeded
    assert at_stop < count, "the job finished before the outage; the test proves nothing"
    assert wait_until(lambda: "transient failure" in worker.log(), 15, 0.1), worker.log()[-3000:]
    time.sleep(1.0)  # down for a while, but shorter than the retries (about 4 s of backoff)
    private_nats.start()

    assert wait_until(lambda: job_state(job).status == RedriveJobStatus.COMPLETED, 60, 0.2), (
        job.status,
        job.succeeded,
        job.failed,
        worker.log()[-3000:],
    )
    assert (job.total, job.succeeded, job.failed, job.skipped) == (count, count, 0, 0)
    arrived = check_confirmed(job, private_nats, work)
    # at least once each (a copy whose PubAck was lost may be there twice)
    assert {bytes(m["payload"]) for m in arrived} == {f"redrive-{i}".encode() for i in range(count)}


def test_long_nats_outage_fails_the_chunk_with_a_transient_reason(private_nats, nats_streams, workers):
    count = 30
    source, work = harvested_source(private_nats, nats_streams, count)
    worker = workers()
    ids = list(source.dead_letters.values_list("id", flat=True))
    job = redrive_job_create(ids=ids, velocity=10, batch_size=5)

    assert wait_until(lambda: job_state(job).succeeded >= 5, 45, 0.1), (job.status, worker.log()[-3000:])
    private_nats.stop()
    # longer than the worker's transient retries (about 4 s of backoff): the chunk fails
    assert wait_until(lambda: job_state(job).failed > 0, 45, 0.2), worker.log()[-3000:]
    private_nats.start()

    assert wait_until(lambda: job_state(job).status == RedriveJobStatus.COMPLETED, 60, 0.2), (
        job.status,
        worker.log()[-3000:],
    )
    assert job.total == count and job.skipped == 0
    assert 0 < job.failed < count and job.succeeded > 5, (job.succeeded, job.failed)
    check_confirmed(job, private_nats, work)
    failed = RedriveAttempt.objects.filter(job=job, status=RedriveAttemptStatus.FAILED)
    for attempt in failed:
        assert attempt.error.startswith("transient: "), attempt.error
        assert "NATS" in attempt.error, attempt.error  # e.g. "cannot connect to NATS at nats://..."
    failed_rows = DeadLetter.objects.filter(pk__in=failed.values("dead_letter_id"))
    assert set(failed_rows.values_list("status", flat=True)) == {DeadLetterStatus.FAILED}
    assert set(failed_rows.values_list("redrive_count", flat=True)) == {0}
