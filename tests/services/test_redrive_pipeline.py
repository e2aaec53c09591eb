"""redrive_job_process, the pipelined runner the Celery task calls, against real RabbitMQ: a whole
job in one call on one connection, pause / cancel within one chunk (the chunk claimed but not
started goes back), velocity pacing inside a call and across calls, a connection dropped between
chunks, transient failures on a fresh connection, stale claims, and the attempts a job starts
with."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.utils import timezone

import brokers
from brokers import shared
from brokers.base import ConnectionConfig, RedriveMessage
from dlqadmin.models import (
    DeadLetter,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveAttemptStatus,
    RedriveJobStatus,
)
from dlqadmin.services.connections import connection_config
from dlqadmin.services.redrive import send as redrive_chunk
from dlqadmin.services.redrive.jobs import (
    redrive_job_cancel,
    redrive_job_create,
    redrive_job_pause,
    redrive_job_resume,
)
from dlqadmin.services.redrive.worker import redrive_job_process, redrive_job_step
from tests.support import rabbit

pytestmark = pytest.mark.django_db(transaction=True)


def job_for(source, **kwargs):
    return redrive_job_create(ids=list(source.dead_letters.values_list("id", flat=True)), **kwargs)


@pytest.fixture
def after_claims(monkeypatch):
    """``after_claims(n, action)``: run ``action()`` right after the n-th chunk is claimed (the
    operator acting while the worker is mid-run, at a known point)."""

    def install(n: int, action):
        real, calls = redrive_chunk.claim, []

        def claim(job, size):
            chunk = real(job, size)
            calls.append(chunk)
            if len(calls) == n:
                action()
            return chunk

        monkeypatch.setattr(redrive_chunk, "claim", claim)
        return calls

    return install


def test_one_call_redrives_the_whole_job_over_one_connection(harvested):
    source, top = harvested(30)
    job = job_for(source, batch_size=4)
    config = connection_config(source.connection, timeout=10.0)
    result = redrive_job_process(job_id=job.pk, seconds=60)
    job.refresh_from_db()
    assert (result.processed, result.more) == (30, False)
    assert (job.status, job.succeeded, job.failed) == (RedriveJobStatus.COMPLETED, 30, 0)
    assert sorted(m.body for m in rabbit.drain(top.work_queue)) == sorted(
        f"msg-{i}".encode() for i in range(30)
    )
    assert (
        DeadLetter.objects.filter(source=source, status=DeadLetterStatus.REDRIVEN, redrive_count=1).count()
        == 30
    )
    assert (
        RedriveAttempt.objects.filter(job=job, status=RedriveAttemptStatus.SUCCEEDED, tries=1).count() == 30
    )

    async def kept():
        return await shared.adapter(config)

    adapter = brokers.run(kept)  # the adapter the chunks used is still open for the next job
    assert adapter._connected()


def test_cancel_mid_run_sends_nothing_more_than_the_chunk_in_flight(harvested, after_claims):
    source, top = harvested(20)
    job = job_for(source, batch_size=5)
    # chunk 1 is publishing and chunk 2 is claimed when the operator cancels
    after_claims(2, lambda: redrive_job_cancel(job=job))
    result = redrive_job_process(job_id=job.pk, seconds=60)
    assert (result.processed, result.more) == (5, True)
    assert not RedriveAttempt.objects.filter(job=job, status=RedriveAttemptStatus.CLAIMED).exists()
    redrive_job_process(job_id=job.pk)  # the next task sees CANCELLING and releases the rest
    job.refresh_from_db()
    assert job.status == RedriveJobStatus.CANCELLED
    assert (job.succeeded, job.failed, job.skipped, job.total) == (5, 0, 15, 20)
    assert len(rabbit.drain(top.work_queue)) == 5
    assert DeadLetter.objects.filter(source=source, status=DeadLetterStatus.NEW).count() == 15


def test_pause_mid_run_gives_back_the_unstarted_chunk_and_resume_sends_each_once(harvested, after_claims):
    source, top = harvested(12)
    job = job_for(source, batch_size=4)
    after_claims(2, lambda: redrive_job_pause(job=job))
    assert redrive_job_process(job_id=job.pk, seconds=60).processed == 4
    assert redrive_job_process(job_id=job.pk).processed == 0  # paused: nothing happens
    job.refresh_from_db()
    assert (job.status, job.succeeded) == (RedriveJobStatus.PAUSED, 4)
    assert RedriveAttempt.objects.filter(job=job, status=RedriveAttemptStatus.PENDING, tries=0).count() == 8
    redrive_job_resume(job=job)
    result = redrive_job_process(job_id=job.pk, seconds=60)
    job.refresh_from_db()
    assert (result.more, job.status, job.succeeded) == (False, RedriveJobStatus.COMPLETED, 12)
    assert sorted(m.body for m in rabbit.drain(top.work_queue)) == sorted(
        f"msg-{i}".encode() for i in range(12)
    )
    assert RedriveAttempt.objects.filter(job=job, tries=1).count() == 12  # nobody claimed twice


def test_velocity_paces_chunks_inside_a_call(harvested):
    source, top = harvested(24)
    job = job_for(source, batch_size=100, velocity=12)
    started = time.monotonic()
    result = redrive_job_process(job_id=job.pk, seconds=30)
    elapsed = time.monotonic() - started
    assert (result.processed, result.more) == (24, False)
    # chunks of 12 at 12/s: the second starts a second after the first
    assert 0.95 <= elapsed < 8, elapsed
    assert len(rabbit.drain(top.work_queue)) == 24


def test_velocity_beyond_the_time_budget_returns_the_delay(harvested):
    source, _ = harvested(10)
    job = job_for(source, batch_size=100, velocity=5)
    result = redrive_job_process(job_id=job.pk, seconds=0.2)
    assert (result.processed, result.more) == (5, True)
    assert 0.5 < result.delay <= 1.0  # 5 messages at 5/s: the next chunk may start after 1 s
    job.refresh_from_db()
    assert (
        job.succeeded == 5 and not RedriveAttempt.objects.filter(status=RedriveAttemptStatus.CLAIMED).exists()
    )


def test_a_connection_dropped_between_chunks_is_reopened(harvested, after_claims):
    source, top = harvested(12)
    job = job_for(source, batch_size=4)
    config = connection_config(source.connection, timeout=10.0)

    async def drop():
        adapter = await shared.adapter(config)
        await (await adapter._connection()).close()  # as if the broker closed it

    after_claims(2, lambda: brokers.run(drop))  # while chunk 1 is being published
    result = redrive_job_process(job_id=job.pk, seconds=60)
    job.refresh_from_db()
    assert (result.more, job.succeeded, job.failed) == (False, 12, 0)
    arrived = [m.body for m in rabbit.drain(top.work_queue)]
    assert set(arrived) == {f"msg-{i}".encode() for i in range(12)}
    assert len(arrived) <= 12 + 4  # at least once: chunk 1 may have been stored before the drop


def test_transient_failures_are_retried_on_a_new_connection(monkeypatch):
    """A broker that cannot be reached: every retry discards the adapter (so the next one
    connects afresh); after the last retry the outcome is a transient failure."""
    monkeypatch.setattr(redrive_chunk, "TRANSIENT_RETRIES", 2)
    config = ConnectionConfig(kind="rabbitmq", url="amqp://127.0.0.1:1/", timeout=2)
    created = []
    real = shared.adapter

    async def counting(cfg):
        adapter = await real(cfg)
        created.append(adapter)
        return adapter

    monkeypatch.setattr(shared, "adapter", counting)
    msg = RedriveMessage(ref=1, redrive_id="r-1", payload=b"x")
    (outcome,) = brokers.run(redrive_chunk._publish, 0, config, [msg], None, None)
    assert not outcome.ok and not outcome.permanent and "connect" in outcome.error
    assert len(created) == 3 and len({id(a) for a in created}) == 3  # a new adapter each time
    assert ("adapter", *shared.fingerprint(config)) not in shared._state.clients


def test_a_stale_claim_is_taken_back_and_sent_once(harvested, settings):
    settings.DLQADMIN_STALE_CLAIM_SECONDS = 0
    source, top = harvested(6)
    job = job_for(source, batch_size=3)
    RedriveAttempt.objects.filter(job=job).update(
        status=RedriveAttemptStatus.CLAIMED, claimed_at=timezone.now() - timedelta(minutes=5)
    )
    result = redrive_job_process(job_id=job.pk, seconds=60)
    job.refresh_from_db()
    assert (result.more, job.status, job.succeeded) == (False, RedriveJobStatus.COMPLETED, 6)
    assert len(rabbit.drain(top.work_queue)) == 6


def test_two_workers_on_one_job_count_each_message_once(harvested):
    source, top = harvested(40)
    job = job_for(source, batch_size=3)
    results = []

    def worker():
        try:
            results.append(redrive_job_process(job_id=job.pk, seconds=60))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    while redrive_job_step(job_id=job.pk).more:  # whoever finished first left the rest
        pass
    job.refresh_from_db()
    assert (job.status, job.succeeded, job.failed) == (RedriveJobStatus.COMPLETED, 40, 0)
    assert sum(r.processed for r in results) == 40
    assert len(rabbit.drain(top.work_queue)) == 40
    assert RedriveAttempt.objects.filter(job=job, tries=1).count() == 40


def test_a_new_job_has_one_pending_attempt_per_message_with_its_own_redrive_id(harvested):
    source, _ = harvested(5)
    letters = list(source.dead_letters.order_by("id"))
    DeadLetter.objects.filter(pk=letters[0].pk).update(status=DeadLetterStatus.FAILED)
    DeadLetter.objects.filter(pk=letters[1].pk).update(status=DeadLetterStatus.PARKED)
    job = job_for(source)
    attempts = {a.dead_letter_id: a for a in RedriveAttempt.objects.filter(job=job)}
    assert len(attempts) == 5 and len({a.redrive_id for a in attempts.values()}) == 5
    parked = attempts.pop(letters[1].pk)
    assert parked.status == RedriveAttemptStatus.SKIPPED and parked.error.startswith("loop guard")
    assert parked.finished_at is not None and parked.previous_status == DeadLetterStatus.PARKED
    assert attempts[letters[0].pk].previous_status == DeadLetterStatus.FAILED
    for attempt in attempts.values():
        assert (attempt.status, attempt.tries, attempt.error, attempt.finished_at) == ("pending", 0, "", None)
    assert DeadLetter.objects.filter(source=source, status=DeadLetterStatus.QUEUED).count() == 4
    assert (job.total, job.skipped) == (5, 1)


def test_an_unexpected_error_mid_run_is_raised_after_settling_what_it_can(harvested, monkeypatch):
    source, top = harvested(16)
    job = job_for(source, batch_size=4)
    real, calls = redrive_chunk._publish_all, []

    async def failing_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a bug in an adapter")
        return await real(*args)

    monkeypatch.setattr(redrive_chunk, "_publish_all", failing_second)
    with pytest.raises(RuntimeError, match="a bug in an adapter"):
        redrive_job_process(job_id=job.pk, seconds=60)
    job.refresh_from_db()
    assert job.succeeded == 4  # chunk 1 was confirmed and is recorded
    attempts = RedriveAttempt.objects.filter(job=job)
    # chunk 2 has no outcome: it stays claimed until the stale-claim reclaim; chunk 3 went back
    assert attempts.filter(status=RedriveAttemptStatus.CLAIMED).count() == 4
    assert attempts.filter(status=RedriveAttemptStatus.PENDING).count() == 8
    assert len(rabbit.drain(top.work_queue)) == 4


def test_inside_an_open_transaction_the_outcomes_are_recorded_on_the_calling_thread(harvested):
    """A second database connection could not see the transaction's rows (it would record
    nothing): no recorder thread then."""
    source, top = harvested(9)
    with transaction.atomic():
        job = job_for(source, batch_size=4)
        result = redrive_job_process(job_id=job.pk, seconds=60)
        job.refresh_from_db()
        assert (result.more, job.status, job.succeeded) == (False, RedriveJobStatus.COMPLETED, 9)
    assert len(rabbit.drain(top.work_queue)) == 9
