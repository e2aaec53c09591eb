"""Who owns a message and a chunk, forced interleaving by interleaving: real threads, each on its
own PostgreSQL connection, holding a transaction open where a worker or a request would, and
real RabbitMQ counting what arrives (``dlqadmin.services.redrive.lease``)."""

from __future__ import annotations

import logging
import threading

import pytest
from django.db import connection, connections, transaction

from brokers.base import RedriveOutcome
from dlqadmin.models import (
    CounterName,
    DeadLetter,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveAttemptStatus,
    RedriveJob,
    RedriveJobStatus,
)
from dlqadmin.services.counters import counter_totals
from dlqadmin.services.redrive import lease as redrive_lease
from dlqadmin.services.redrive import send as redrive_chunk
from dlqadmin.services.redrive.jobs import RedriveError, redrive_job_cancel, redrive_job_create
from dlqadmin.services.redrive.worker import redrive_job_process, redrive_job_step, redrive_jobs_watchdog
from tests.support import rabbit
from tests.support.jobs import run_to_end
from tests.support.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def short_lease(settings):
    settings.DLQADMIN_STALE_CLAIM_SECONDS = 1


class Held:
    """Run ``work`` in a thread of its own, inside a transaction it keeps open until
    ``finish(commit=...)``: the interleaving "someone has done it but not committed yet"."""

    def __init__(self, work):
        self.work, self.result, self.error = work, None, None
        self.done_work, self.go, self.commit = threading.Event(), threading.Event(), True
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        assert self.done_work.wait(30), "the held work did not run"
        if self.error is not None:
            raise self.error

    def _run(self):
        try:
            with transaction.atomic():
                try:
                    self.result = self.work()
                except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                    self.error = exc
                self.done_work.set()
                self.go.wait(60)
                if not self.commit:
                    transaction.set_rollback(True)
        finally:
            connections.close_all()

    def finish(self, *, commit: bool = True):
        self.commit = commit
        self.go.set()
        self.thread.join(30)
        return self.result


class Background:
    """Call ``fn`` in a thread with its own database connection; ``result()`` joins it."""

    def __init__(self, fn):
        self.value = self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn,))
        self.thread.start()

    def _run(self, fn):
        try:
            self.value = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            self.error = exc
        finally:
            connections.close_all()

    def result(self, timeout: float = 30):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the background call did not finish"
        if self.error is not None:
            raise self.error
        return self.value


def waiting_on_a_lock() -> bool:
    """Some other session of this database waits for a lock (a row, a unique index entry)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


def ids_of(source) -> list[int]:
    return list(source.dead_letters.order_by("id").values_list("id", flat=True))


def test_a_second_creation_waits_for_an_uncommitted_first_one_and_then_is_refused(harvested):
    source, top = harvested(8)
    ids = ids_of(source)
    first = Held(lambda: redrive_job_create(ids=ids, batch_size=4))  # claimed, not committed
    second = Background(lambda: redrive_job_create(ids=ids, batch_size=4))
    assert wait_until(waiting_on_a_lock, 10), "the second claim did not wait for the first"
    job_a = first.finish(commit=True)
    with pytest.raises(RedriveError) as err:
        second.result()
    assert err.value.conflict and f"(#{job_a.pk})" in str(err.value)
    assert RedriveJob.objects.count() == 1  # the refused job was rolled back whole
    job_a = run_to_end(job_a)
    assert (job_a.succeeded, job_a.skipped) == (8, 0)
    arrived = [m.body for m in rabbit.drain(top.work_queue)]
    assert sorted(arrived) == sorted(f"msg-{i}".encode() for i in range(8))  # each exactly once


def test_a_second_creation_takes_the_messages_when_the_first_rolls_back(harvested):
    source, top = harvested(6)
    ids = ids_of(source)
    first = Held(lambda: redrive_job_create(ids=ids[:4]))
    second = Background(lambda: redrive_job_create(ids=ids))
    assert wait_until(waiting_on_a_lock, 10)
    first.finish(commit=False)
    job_b = second.result()
    assert (job_b.total, job_b.skipped) == (6, 0)
    assert RedriveAttempt.objects.filter(job=job_b, holds=True).count() == 6
    job_b = run_to_end(job_b)
    assert job_b.succeeded == 6 and len(rabbit.drain(top.work_queue)) == 6


def test_overlapping_creations_split_the_messages_each_sent_once(harvested):
    source, top = harvested(10)
    ids = ids_of(source)
    first = Held(lambda: redrive_job_create(ids=ids[:6]))
    second = Background(lambda: redrive_job_create(ids=ids[3:]))  # 3 in common
    assert wait_until(waiting_on_a_lock, 10)
    job_a = first.finish()
    job_b = second.result()
    assert (job_b.total, job_b.skipped) == (7, 3)
    busy = RedriveAttempt.objects.filter(job=job_b, status=RedriveAttemptStatus.SKIPPED)
    assert set(busy.values_list("dead_letter_id", "error")) == {
        (pk, f"busy in job #{job_a.pk}") for pk in ids[3:6]
    }
    job_a, job_b = run_to_end(job_a), run_to_end(job_b)
    assert (job_a.succeeded, job_b.succeeded) == (6, 4)
    assert sorted(m.body for m in rabbit.drain(top.work_queue)) == sorted(
        f"msg-{i}".encode() for i in range(10)
    )
    assert set(DeadLetter.objects.filter(source=source).values_list("redrive_count", flat=True)) == {1}


def test_a_job_does_not_finish_while_another_worker_holds_an_uncommitted_claim(harvested):
    source, top = harvested(6)
    job = redrive_job_create(ids=ids_of(source), batch_size=3)
    redrive_job_step(job_id=job.pk)  # running, the first chunk sent
    held = Held(lambda: redrive_chunk.claim(job, 3))  # a worker between its claim and its commit
    result = redrive_job_process(job_id=job.pk, seconds=10)
    job.refresh_from_db()
    assert job.status == RedriveJobStatus.RUNNING, "finished under a claim not committed yet"
    assert result.more and result.delay > 0  # it looks again later
    chunk = held.finish()
    chunk.start({})
    assert redrive_chunk.record(chunk, chunk.results()) == 3
    assert redrive_job_step(job_id=job.pk).more is False
    job.refresh_from_db()
    assert (job.status, job.succeeded, job.total) == (RedriveJobStatus.COMPLETED, 6, 6)
    assert not DeadLetter.objects.filter(source=source, status=DeadLetterStatus.QUEUED).exists()
    assert not RedriveAttempt.objects.filter(job=job, holds=True).exists()  # released at the end
    assert len(rabbit.drain(top.work_queue)) == 6


def test_an_expired_claim_is_taken_over_and_the_late_owner_cannot_record(harvested, short_lease, caplog):
    source, top = harvested(4)
    job = redrive_job_create(ids=ids_of(source), batch_size=4)
    late = redrive_chunk.claim(job, 4)  # this owner freezes: it never renews
    first_token = late.token
    assert wait_until(lambda: redrive_lease.next_expiry(job) == 0.0, 5, 0.1)
    # a second worker takes the chunk over under a new token and delivers it
    assert Background(lambda: redrive_job_step(job_id=job.pk)).result().processed == 4
    attempts = RedriveAttempt.objects.filter(job=job)
    assert set(attempts.values_list("status", "tries")) == {(RedriveAttemptStatus.SUCCEEDED, 2)}
    # the late owner wakes up and reports a failure for messages that were delivered: refused
    failure = [(item, RedriveOutcome(ref=item.pk, ok=False, error="connection reset")) for item in late.items]
    with caplog.at_level(logging.WARNING):
        assert redrive_chunk.record(late, failure) == 0
    assert f"claim {first_token} refused" in caplog.text
    assert redrive_chunk.unclaim(late) == 0  # nor can it give back what it no longer owns
    job.refresh_from_db()
    assert (job.succeeded, job.failed) == (4, 0)
    assert set(attempts.values_list("status", flat=True)) == {RedriveAttemptStatus.SUCCEEDED}
    assert set(DeadLetter.objects.filter(source=source).values_list("status", flat=True)) == {"redriven"}
    totals = counter_totals()  # the refused outcomes are not counted
    assert totals[(source.pk, CounterName.REDRIVEN)] == 4
    assert (source.pk, CounterName.REDRIVE_FAILED) not in totals
    assert len(rabbit.drain(top.work_queue)) == 4


def test_a_renewed_lease_is_not_taken_over(harvested, short_lease):
    source, _ = harvested(3)
    job = redrive_job_create(ids=ids_of(source), batch_size=3)
    chunk = redrive_chunk.claim(job, 3)
    keeper = redrive_lease.Keeper(job.pk, lambda: [chunk.token])
    keeper.wait(seconds=2.5)  # two and a half leases, renewed on the way
    assert redrive_lease.reclaim_expired(job) == 0
    result = Background(lambda: redrive_job_step(job_id=job.pk)).result()
    assert result.processed == 0 and result.more  # nothing to take: it will look again
    chunk.start({})
    assert redrive_chunk.record(chunk, chunk.results()) == 3


def test_cancel_waits_for_a_dead_workers_claim_to_expire_then_releases_it(harvested, short_lease):
    source, top = harvested(5)
    job = redrive_job_create(ids=ids_of(source), batch_size=2)
    redrive_chunk.claim(job, 2)  # a worker claimed two and died
    redrive_job_cancel(job=job)
    first = redrive_job_step(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == RedriveJobStatus.CANCELLING and first.more and 0.5 <= first.delay <= 1.2
    assert wait_until(lambda: redrive_lease.next_expiry(job) == 0.0, 5, 0.1)
    assert redrive_job_step(job_id=job.pk).more is False
    job.refresh_from_db()
    assert (job.status, job.skipped, job.succeeded) == (RedriveJobStatus.CANCELLED, 5, 0)
    assert set(DeadLetter.objects.filter(source=source).values_list("status", flat=True)) == {"new"}
    assert not RedriveAttempt.objects.filter(holds=True).exists()
    assert rabbit.drain(top.work_queue) == []


def test_the_watchdog_releases_messages_no_job_will_send(harvested):
    source, top = harvested(4)
    a, b, c, d = ids_of(source)
    deleted = redrive_job_create(ids=[a, b])
    RedriveJob.objects.filter(pk=deleted.pk).delete()  # e.g. from the admin: attempts go with it
    stuck = redrive_job_create(ids=[c])  # left pending in a finished job (an older version's bug)
    RedriveJob.objects.filter(pk=stuck.pk).update(status=RedriveJobStatus.COMPLETED)
    DeadLetter.objects.filter(pk=d).update(status=DeadLetterStatus.FAILED)
    alive = redrive_job_create(ids=[d])
    assert DeadLetter.objects.filter(status=DeadLetterStatus.QUEUED).count() == 4

    redrive_jobs_watchdog()
    statuses = dict(DeadLetter.objects.filter(source=source).values_list("id", "status"))
    assert statuses == {a: "new", b: "new", c: "new", d: "queued"}  # the live job keeps its own
    attempt = RedriveAttempt.objects.get(job=stuck)
    assert (attempt.status, attempt.holds) == (RedriveAttemptStatus.SKIPPED, False)
    assert "released" in attempt.error
    # a way out: the released messages can be redriven again
    job = run_to_end(redrive_job_create(ids=[a, b, c]))
    assert job.succeeded == 3 and run_to_end(alive).succeeded == 1
    assert len(rabbit.drain(top.work_queue)) == 4


def test_a_hold_that_outlived_its_job_is_taken_by_the_next_claim(harvested):
    source, top = harvested(3)
    ended = run_to_end(redrive_job_create(ids=ids_of(source)))
    RedriveAttempt.objects.filter(job=ended).update(holds=True)  # ended without releasing them
    job = redrive_job_create(ids=ids_of(source))
    assert (job.total, job.skipped) == (3, 0)
    assert not RedriveAttempt.objects.filter(job=ended, holds=True).exists()
    assert run_to_end(job).succeeded == 3 and len(rabbit.drain(top.work_queue)) == 6
