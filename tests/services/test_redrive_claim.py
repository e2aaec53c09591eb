"""A redrive over a large filter: the request claims the first messages, the worker the rest
(``dlqadmin.services.redrive.claim``), against real RabbitMQ and PostgreSQL."""

import pytest
from django.contrib.auth.models import Group

from dlqadmin import permissions
from dlqadmin.models import (
    AuditEvent,
    DeadLetter,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveJob,
    RedriveJobStatus,
)
from dlqadmin.selectors import DeadLetterFilter
from dlqadmin.services.redrive import claim as redrive_claim
from dlqadmin.services.redrive.jobs import (
    redrive_job_cancel,
    redrive_job_create,
    redrive_job_pause,
    redrive_job_resume,
)
from dlqadmin.services.redrive.worker import redrive_job_process, redrive_job_step
from tests.conftest import user_in_role
from tests.support import rabbit
from tests.support.jobs import run_to_end

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def small_claims(settings, monkeypatch):
    """The request claims 3 messages, the worker 4 per transaction."""
    settings.DLQADMIN_REDRIVE_CLAIM_IN_REQUEST = 3
    monkeypatch.setattr(redrive_claim, "CLAIM_CHUNK", 4)


def by_filter(source):
    return DeadLetterFilter.parse({"source": [str(source.pk)]})


def test_the_request_claims_a_part_and_the_worker_the_rest_each_message_once(harvested, small_claims):
    source, top = harvested(11)
    late, _ = harvested(2)  # arrives after the plan; the pinned filter never reaches it
    plan_top = DeadLetter.objects.filter(source=source).order_by("-id").values_list("id", flat=True)[0]
    pinned = DeadLetterFilter(**{**by_filter(source).__dict__, "max_id": plan_top})
    DeadLetter.objects.filter(source=late).update(source=source)

    job = redrive_job_create(filters=pinned, batch_size=5)
    assert job.claiming and job.total == 11  # the plan's estimate until claimed
    assert RedriveAttempt.objects.filter(job=job).count() == 3
    assert DeadLetter.objects.filter(source=source, status=DeadLetterStatus.QUEUED).count() == 3
    assert AuditEvent.objects.get(action="redrive.create").detail["claimed_by_worker"] is True

    job = run_to_end(job)
    assert job.status == RedriveJobStatus.COMPLETED and not job.claiming
    assert (job.total, job.succeeded, job.failed, job.skipped) == (11, 11, 0, 0)
    assert sorted(m.body for m in rabbit.drain(top.work_queue)) == sorted(
        f"msg-{i}".encode() for i in range(11)
    )
    assert DeadLetter.objects.filter(source=source, status=DeadLetterStatus.REDRIVEN).count() == 11
    assert DeadLetter.objects.filter(source=source, status=DeadLetterStatus.NEW).count() == 2  # the late ones


def test_the_pipelined_worker_claims_ahead_and_finishes_exactly(harvested, small_claims):
    source, top = harvested(14)
    job = redrive_job_create(filters=by_filter(source), batch_size=2)
    assert job.claiming
    for _ in range(50):
        if not redrive_job_process(job_id=job.pk, seconds=0.5).more:
            break
    job.refresh_from_db()
    assert job.status == RedriveJobStatus.COMPLETED and not job.claiming
    assert (job.total, job.succeeded) == (14, 14)
    assert len(rabbit.drain(top.work_queue)) == 14
    assert RedriveAttempt.objects.filter(job=job).count() == 14


def test_messages_busy_in_another_job_are_skipped_with_the_job_named(harvested, small_claims):
    source, top = harvested(9)
    ids = list(DeadLetter.objects.filter(source=source).order_by("id").values_list("id", flat=True))
    other = redrive_job_create(ids=ids[5:7])  # two in the middle belong to another job
    job = redrive_job_create(filters=by_filter(source))
    assert job.total == 9  # the plan's estimate while the worker claims
    job = run_to_end(job)
    assert (job.total, job.succeeded, job.skipped) == (9, 7, 2)
    busy = RedriveAttempt.objects.filter(job=job, dead_letter_id__in=ids[5:7])
    assert set(busy.values_list("status", "error")) == {("skipped", f"busy in job #{other.pk}")}
    run_to_end(other)
    assert len(rabbit.drain(top.work_queue)) == 9
    assert set(DeadLetter.objects.filter(source=source).values_list("redrive_count", flat=True)) == {1}


def test_cancel_while_claiming_stops_the_claim_and_restores_what_was_claimed(harvested, small_claims):
    source, top = harvested(10)
    job = redrive_job_create(filters=by_filter(source), batch_size=3)
    redrive_job_step(job_id=job.pk)  # claims 4 more (7 held), sends 3
    redrive_job_cancel(job=job)
    job = run_to_end(job)
    assert job.status == RedriveJobStatus.CANCELLED and not job.claiming
    assert (job.total, job.succeeded, job.skipped) == (7, 3, 4)
    assert DeadLetter.objects.filter(source=source, status=DeadLetterStatus.REDRIVEN).count() == 3
    assert DeadLetter.objects.filter(source=source, status=DeadLetterStatus.NEW).count() == 7
    assert len(rabbit.drain(top.work_queue)) == 3


def test_a_paused_job_claims_nothing_until_resumed(harvested, small_claims):
    source, top = harvested(8)
    job = redrive_job_create(filters=by_filter(source), batch_size=8)
    redrive_job_pause(job=job)
    assert redrive_job_step(job_id=job.pk).processed == 0
    assert redrive_claim.claim_next(job) is False
    assert RedriveAttempt.objects.filter(job=job).count() == 3
    redrive_job_resume(job=job)
    job = run_to_end(job)
    assert (job.status, job.total, job.succeeded) == (RedriveJobStatus.COMPLETED, 8, 8)
    assert len(rabbit.drain(top.work_queue)) == 8


def test_the_worker_claims_only_what_the_creator_may_see(harvested, small_claims, django_user_model):
    mine, my_top = harvested(6)
    theirs, their_top = harvested(4)
    team = Group.objects.create(name="team-claim")
    theirs.allowed_groups.add(Group.objects.create(name="others-claim"))
    mine.allowed_groups.add(team)
    user = user_in_role(django_user_model, permissions.OPERATOR, "claimer")
    user.groups.add(team)
    job = redrive_job_create(actor=user, filters=DeadLetterFilter.parse({"status": ["new"]}))
    assert job.claiming
    job = run_to_end(job)
    assert (job.total, job.succeeded) == (6, 6)
    assert not RedriveAttempt.objects.filter(job=job, dead_letter__source=theirs).exists()
    assert len(rabbit.drain(my_top.work_queue)) == 6 and rabbit.drain(their_top.work_queue) == []


def test_a_deleted_creator_stops_the_claim_instead_of_widening_it(harvested, small_claims, django_user_model):
    source, top = harvested(7)
    user = user_in_role(django_user_model, permissions.OPERATOR, "leaver")
    job = redrive_job_create(actor=user, filters=by_filter(source))
    user.delete()
    job = run_to_end(job)
    assert job.status == RedriveJobStatus.COMPLETED and not job.claiming
    assert (job.total, job.succeeded) == (3, 3)
    assert DeadLetter.objects.filter(source=source, status=DeadLetterStatus.NEW).count() == 4
    assert len(rabbit.drain(top.work_queue)) == 3


def test_a_job_within_the_request_limit_is_claimed_whole(harvested):
    source, _ = harvested(5)
    job = redrive_job_create(filters=by_filter(source))
    assert not job.claiming and job.total == 5
    assert RedriveJob.objects.get(pk=job.pk).claim_cursor is None
    assert RedriveAttempt.objects.filter(job=job).count() == 5
