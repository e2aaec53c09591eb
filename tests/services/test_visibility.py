"""Per-source restrictions in the write services: a user acts only on messages of sources they
may see, by ids or by filter; the system (actor=None) acts on everything."""

import pytest
from django.core.exceptions import PermissionDenied

from dlqadmin.models import AuditEvent, DeadLetter, DeadLetterRevision, DeadLetterStatus, RedriveJob
from dlqadmin.selectors import DeadLetterFilter, dead_letters_for
from dlqadmin.services.dead_letters import (
    dead_letter_revise,
    dead_letters_archive,
    dead_letters_discard,
    dead_letters_resolve,
    error_group_set_status,
)
from dlqadmin.services.redrive.jobs import RedriveError, redrive_job_create, redrive_plan
from tests.support.access_world import build

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return build()


@pytest.fixture
def insider(django_user_model, world):
    """An operator in the group the restricted source is shared with."""
    from tests.conftest import user_in_role

    user = user_in_role(django_user_model, "operator")
    user.groups.add(world.payroll)
    return user


def every(world) -> DeadLetterFilter:
    return DeadLetterFilter.parse({"status": ["new"]})


def test_a_redrive_by_ids_ignores_messages_of_invisible_sources(world, operator):
    with pytest.raises(RedriveError, match="nothing matches"):
        redrive_job_create(actor=operator, ids=[world.hidden.pk])
    job = redrive_job_create(actor=operator, ids=[world.hidden.pk, world.letter.pk])
    assert job.total == 1
    assert list(job.attempts.values_list("dead_letter_id", flat=True)) == [world.letter.pk]
    assert DeadLetter.objects.get(pk=world.hidden.pk).status == DeadLetterStatus.NEW


def test_a_redrive_by_filter_never_reaches_invisible_sources(world, operator):
    by_name = DeadLetterFilter.parse({"source": [world.secret.name]})
    assert redrive_plan(actor=operator, filters=by_name).total == 0
    with pytest.raises(RedriveError, match="nothing matches"):
        redrive_job_create(actor=operator, filters=by_name)
    plan = redrive_plan(actor=operator, filters=every(world))
    assert plan.total == 1 and {d["source"] for d in plan.destinations} == {world.source.name}
    job = redrive_job_create(actor=operator, filters=every(world))
    assert job.total == 1 and not job.attempts.filter(dead_letter=world.hidden).exists()


def test_an_operator_of_the_group_and_the_system_redrive_restricted_messages(world, insider):
    assert redrive_plan(actor=insider, filters=every(world)).total == 2
    assert redrive_plan(filters=every(world)).total == 2  # actor=None: the system
    job = redrive_job_create(actor=insider, ids=[world.hidden.pk])
    assert job.total == 1


@pytest.mark.parametrize(
    ("service", "status"),
    [
        (dead_letters_discard, DeadLetterStatus.DISCARDED),
        (dead_letters_resolve, DeadLetterStatus.RESOLVED),
        (dead_letters_archive, DeadLetterStatus.ARCHIVED),
    ],
)
def test_discard_resolve_and_archive_leave_invisible_messages_alone(world, operator, service, status):
    assert service(actor=operator, ids=[world.hidden.pk]) == 0
    assert service(actor=operator, filters=DeadLetterFilter.parse({"source": [world.secret.name]})) == 0
    assert service(actor=operator, filters=every(world)) == 1
    assert DeadLetter.objects.get(pk=world.hidden.pk).status == DeadLetterStatus.NEW
    assert DeadLetter.objects.get(pk=world.letter.pk).status == status


def test_settling_as_the_system_reaches_every_source(world):
    assert dead_letters_discard(actor=None, filters=every(world)) == 2


def test_editing_a_message_of_an_invisible_source_is_refused(world, operator, insider):
    with pytest.raises(PermissionDenied, match="source you may not see"):
        dead_letter_revise(actor=operator, dead_letter=world.hidden, payload=b'{"salary": 1}')
    assert not DeadLetterRevision.objects.exists()
    dead_letter_revise(actor=insider, dead_letter=world.hidden, payload=b'{"salary": 1}')
    assert DeadLetterRevision.objects.count() == 1


def test_a_masked_user_may_never_store_an_edit(world, django_user_model):
    """Editing starts from the original content; a role that sees masked values cannot edit
    even if it were granted edit (defence in depth: no built-in role combines the two)."""
    from django.contrib.auth.models import Group

    from dlqadmin import permissions

    odd = django_user_model.objects.create_user("odd", password="pass-123-word")
    odd.groups.add(Group.objects.get_or_create(name="viewer")[0])
    odd._dlq_roles = {"viewer"}
    original = permissions.ACTIONS_BY_ROLE["viewer"]
    permissions.ACTIONS_BY_ROLE["viewer"] = original | {permissions.EDIT}
    try:
        with pytest.raises(PermissionDenied, match="view unmasked"):
            dead_letter_revise(actor=odd, dead_letter=world.letter, payload=b"{}")
    finally:
        permissions.ACTIONS_BY_ROLE["viewer"] = original


def test_an_error_group_of_an_invisible_source_cannot_change_status(world, operator, insider):
    group = world.hidden.error_group
    with pytest.raises(PermissionDenied, match="source you may not see"):
        error_group_set_status(actor=operator, group=group, status="ignored")
    group.refresh_from_db()
    assert group.status == "open"
    assert error_group_set_status(actor=insider, group=group, status="ignored").status == "ignored"
    assert AuditEvent.objects.filter(action="error_group.ignored", actor=insider).exists()


def test_reads_for_a_user_never_include_invisible_sources(world, operator, viewer, admin_user, insider):
    for user in (operator, viewer):
        assert list(dead_letters_for(user).values_list("pk", flat=True)) == [world.letter.pk]
    for user in (admin_user, insider, None):
        assert dead_letters_for(user).count() == 2
    assert not RedriveJob.objects.exists()
