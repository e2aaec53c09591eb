"""Redrive jobs end to end against real RabbitMQ: plan, claim, confirm, velocity, cancel, guard."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from brokers import headers
from dlqadmin.models import (
    AuditEvent,
    CounterName,
    DeadLetter,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveAttemptStatus,
    RedriveJob,
    RedriveJobStatus,
    Source,
)
from dlqadmin.selectors import DeadLetterFilter
from dlqadmin.services.connections import connection_create
from dlqadmin.services.counters import counter_totals
from dlqadmin.services.harvest.store import source_harvest
from dlqadmin.services.redrive import destination as redrive_destination
from dlqadmin.services.redrive.jobs import (
    RedriveError,
    redrive_job_cancel,
    redrive_job_create,
    redrive_job_pause,
    redrive_job_resume,
    redrive_plan,
)
from dlqadmin.services.redrive.worker import redrive_job_step
from dlqadmin.services.search import search_index_backlog
from tests.conftest import AMQP_URL
from tests.support import rabbit
from tests.support.jobs import run_to_end

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def harvested(request):
    """``harvested(n)`` -> (source, topology) with n genuine dead letters stored."""
    made = []

    def make(count: int, **kw):
        top = rabbit.dead_letter(count, **kw)
        made.append(top)
        conn = connection_create(
            name=f"rmq-{top.dlq}", kind="rabbitmq", url=AMQP_URL, username="guest", password="guest"
        )
        source = Source.objects.create(
            connection=conn, name=top.dlq, mode="queue", address=top.dlq, max_redrives=3
        )
        report = source_harvest(source=source)
        assert report.inserted == count
        return source, top

    yield make
    for top in made:
        rabbit.delete(top)


def test_a_filter_job_redrives_exactly_the_planned_set(harvested, operator):
    source, top = harvested(6)
    search_index_backlog()  # the filter searches; the harvester's indexer has run
    target = DeadLetterFilter.parse({"source": [source.name], "q": "msg-"})
    plan = redrive_plan(filters=target)
    assert (plan.total, plan.redrivable, plan.parked, plan.busy) == (6, 6, 0, 0)
    assert plan.destinations[0]["destination"] == top.work_queue and plan.destinations[0]["count"] == 6

    late_source, _ = harvested(2)  # arrives after the plan; same filter without the pin would match
    DeadLetter.objects.filter(source=late_source).update(source=source)
    job = redrive_job_create(actor=operator, filters=DeadLetterFilter.parse(plan.filter), batch_size=4)
    assert job.total == 6

    job = run_to_end(job)
    assert job.status == RedriveJobStatus.COMPLETED
    assert (job.succeeded, job.failed, job.skipped) == (6, 0, 0)
    arrived = rabbit.drain(top.work_queue)
    assert sorted(m.body for m in arrived) == [f"msg-{i}".encode() for i in range(6)]
    for m in arrived:
        assert m.headers["x-retry-count"] == 1 and m.headers["x-original-queue"] == top.work_queue
        assert "x-death" not in m.headers
    assert DeadLetter.objects.filter(status=DeadLetterStatus.REDRIVEN).count() == 6
    assert DeadLetter.objects.filter(status=DeadLetterStatus.NEW).count() == 2  # the late arrivals
    assert AuditEvent.objects.filter(action="redrive.create", count=6).exists()


def test_velocity_limits_the_rate(harvested):
    source, top = harvested(12)
    job = redrive_job_create(
        ids=list(source.dead_letters.values_list("id", flat=True)), velocity=8, batch_size=100
    )
    started = time.monotonic()
    for _ in range(100):
        result = redrive_job_step(job_id=job.pk)
        if not result.more:
            break
        time.sleep(result.delay)
    elapsed = time.monotonic() - started
    job.refresh_from_db()
    assert job.succeeded == 12
    # 12 messages at 8/s: the first chunk of 8, then the 4 others start only 8/8 s later (the
    # job's schedule is reserved before each chunk, not slept after it)
    assert elapsed >= 0.95, elapsed
    assert elapsed < 8, elapsed
    assert len(rabbit.drain(top.work_queue)) == 12


def test_cancel_stops_within_one_chunk_and_restores_the_rest(harvested):
    source, top = harvested(10)
    job = redrive_job_create(ids=list(source.dead_letters.values_list("id", flat=True)), batch_size=3)
    assert redrive_job_step(job_id=job.pk).processed == 3
    redrive_job_cancel(job=job)
    run_to_end(job)
    job.refresh_from_db()
    assert job.status == RedriveJobStatus.CANCELLED
    assert (job.succeeded, job.failed, job.skipped, job.total) == (3, 0, 7, 10)
    assert DeadLetter.objects.filter(source=source, status=DeadLetterStatus.REDRIVEN).count() == 3
    assert DeadLetter.objects.filter(source=source, status=DeadLetterStatus.NEW).count() == 7
    assert len(rabbit.drain(top.work_queue)) == 3
    with pytest.raises(RedriveError):
        redrive_job_cancel(job=job)


def test_pause_holds_the_job_and_resume_finishes_it(harvested):
    source, top = harvested(4)
    job = redrive_job_create(ids=list(source.dead_letters.values_list("id", flat=True)), batch_size=2)
    redrive_job_step(job_id=job.pk)
    redrive_job_pause(job=job)
    assert redrive_job_step(job_id=job.pk).processed == 0
    job.refresh_from_db()
    assert job.status == RedriveJobStatus.PAUSED and job.succeeded == 2
    redrive_job_resume(job=job)
    job = run_to_end(job)
    assert job.status == RedriveJobStatus.COMPLETED and job.succeeded == 4
    assert len(rabbit.drain(top.work_queue)) == 4


def test_a_message_in_an_active_job_is_busy_for_a_second_job_until_the_first_ends(harvested):
    source, top = harvested(2)
    first, second = source.dead_letters.order_by("id")
    job_a = redrive_job_create(ids=[first.pk])
    with pytest.raises(RedriveError) as err:
        redrive_job_create(ids=[first.pk])
    assert err.value.conflict and f"(#{job_a.pk})" in str(err.value)
    job_b = redrive_job_create(ids=[first.pk, second.pk])
    assert (job_b.total, job_b.skipped) == (2, 1)
    busy = RedriveAttempt.objects.get(job=job_b, dead_letter=first)
    assert (busy.status, busy.error, busy.holds) == (
        RedriveAttemptStatus.SKIPPED,
        f"busy in job #{job_a.pk}",
        False,
    )
    assert RedriveAttempt.objects.get(job=job_a, dead_letter=first).holds
    run_to_end(job_a)
    job_b = run_to_end(job_b)
    assert (job_b.succeeded, job_b.skipped) == (1, 1)
    assert DeadLetter.objects.get(pk=first.pk).redrive_count == 1
    assert len(rabbit.drain(top.work_queue)) == 2
    # job A ended: its message is free again (a deliberate second redrive)
    assert not RedriveAttempt.objects.filter(holds=True).exists()
    job_c = run_to_end(redrive_job_create(ids=[first.pk]))
    assert (job_c.succeeded, DeadLetter.objects.get(pk=first.pk).redrive_count) == (1, 2)


def test_the_loop_guard_parks_until_overridden(harvested):
    source, top = harvested(2)
    looping, fresh = source.dead_letters.order_by("id")
    DeadLetter.objects.filter(pk=looping.pk).update(retry_count=3)
    plan = redrive_plan(ids=[looping.pk, fresh.pk])
    assert (plan.parked, plan.redrivable) == (1, 1)
    job = run_to_end(redrive_job_create(ids=[looping.pk, fresh.pk]))
    assert (job.succeeded, job.skipped) == (1, 1)
    assert "loop guard" in RedriveAttempt.objects.get(job=job, dead_letter=looping).error
    assert DeadLetter.objects.get(pk=looping.pk).status == DeadLetterStatus.NEW
    job = run_to_end(redrive_job_create(ids=[looping.pk], override_loop_guard=True))
    assert job.succeeded == 1
    arrived = rabbit.drain(top.work_queue)
    assert sorted(m.headers["x-retry-count"] for m in arrived) == [1, 4]


def test_an_unroutable_destination_fails_that_message_with_the_reason(harvested):
    source, _ = harvested(1)
    (letter,) = source.dead_letters.all()
    job = run_to_end(
        redrive_job_create(ids=[letter.pk], destination={"exchange": "", "routing_key": "t.nowhere"})
    )
    assert (job.status, job.succeeded, job.failed) == (RedriveJobStatus.COMPLETED, 0, 1)
    attempt = RedriveAttempt.objects.get(job=job)
    assert attempt.status == RedriveAttemptStatus.FAILED and attempt.error.startswith("permanent:")
    assert DeadLetter.objects.get(pk=letter.pk).status == DeadLetterStatus.FAILED
    totals = counter_totals()
    assert totals[(source.pk, CounterName.REDRIVE_FAILED)] == 1
    assert (source.pk, CounterName.REDRIVEN) not in totals


def test_a_stale_claim_from_a_dead_worker_is_processed_once(harvested, settings):
    settings.DLQADMIN_STALE_CLAIM_SECONDS = 0
    source, top = harvested(3)
    job = redrive_job_create(ids=list(source.dead_letters.values_list("id", flat=True)), batch_size=3)
    # a worker claimed the chunk and died before publishing
    RedriveAttempt.objects.filter(job=job).update(
        status=RedriveAttemptStatus.CLAIMED, claimed_at=timezone.now() - timedelta(minutes=5)
    )
    job = run_to_end(job)
    assert (job.status, job.succeeded, job.failed) == (RedriveJobStatus.COMPLETED, 3, 0)
    assert len(rabbit.drain(top.work_queue)) == 3


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"velocity": -1}, "velocity"),
        ({"batch_size": 0}, "batch_size"),
        ({"destination": {"planet": "mars"}}, "destination"),
        ({"header_policy": {"bogus": True}}, "header_policy"),
    ],
)
def test_bad_options_are_field_errors(harvested, kwargs, field):
    source, _ = harvested(1)
    with pytest.raises(RedriveError) as err:
        redrive_job_create(ids=list(source.dead_letters.values_list("id", flat=True)), **kwargs)
    assert field in err.value.errors
    assert RedriveJob.objects.count() == 0


def test_redriven_headers_keep_the_applications_own(harvested):
    source, top = harvested(1, headers={"trace-id": "abc"})
    run_to_end(redrive_job_create(ids=list(source.dead_letters.values_list("id", flat=True))))
    (msg,) = rabbit.drain(top.work_queue)
    assert msg.headers["trace-id"] == "abc" and msg.headers["tenant"] == "acme"
    stored = DeadLetter.objects.get(source=source)
    assert headers.get(stored.headers, "x-death")  # the evidence stays in the database


def test_the_worker_skips_what_needs_a_destination_when_it_claims_a_large_filter(
    harvested, operator, settings
):
    settings.DLQADMIN_REDRIVE_CLAIM_IN_REQUEST = 2
    source, top = harvested(6)
    lost = list(DeadLetter.objects.filter(source=source).order_by("id").values_list("pk", flat=True))[3:]
    DeadLetter.objects.filter(pk__in=lost).update(origin_queue="", origin_exchange="", origin_routing_key="")
    plan = redrive_plan(filters=DeadLetterFilter.parse({"source": [source.name]}))
    assert (plan.total, plan.redrivable, plan.needs_destination) == (6, 3, 3)
    job = redrive_job_create(actor=operator, filters=DeadLetterFilter.parse({"source": [source.name]}))
    assert job.claiming and job.skipped == 0  # the lost ones are beyond the request's claim
    job = run_to_end(job)
    assert (job.total, job.succeeded, job.failed, job.skipped) == (6, 3, 0, 3)
    skipped = RedriveAttempt.objects.filter(job=job, status=RedriveAttemptStatus.SKIPPED)
    assert sorted(skipped.values_list("dead_letter_id", flat=True)) == lost
    assert {a.error for a in skipped} == {redrive_destination.needs_reason("rabbitmq")}
    assert skipped[0].error.startswith("needs a destination: no origin queue, exchange or routing key")
    assert set(DeadLetter.objects.filter(pk__in=lost).values_list("status", flat=True)) == {"new"}
    assert len(rabbit.drain(top.work_queue)) == 3
