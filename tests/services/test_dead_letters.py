"""Discard, resolve, edit-and-redrive and error-group lifecycle, with role checks and audit."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied

from brokers import headers
from dlqadmin.models import AuditEvent, DeadLetter, DeadLetterStatus, ErrorGroupStatus, RedriveAttempt, Source
from dlqadmin.selectors import DeadLetterFilter
from dlqadmin.services.connections import connection_create
from dlqadmin.services.dead_letters import (
    EditError,
    dead_letter_revise,
    dead_letters_discard,
    dead_letters_resolve,
    error_group_set_status,
)
from dlqadmin.services.harvest.store import source_harvest
from dlqadmin.services.redrive.jobs import redrive_job_create
from dlqadmin.services.redrive.worker import redrive_job_step
from tests.conftest import AMQP_URL
from tests.support import rabbit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def role(django_user_model):
    def make(name):
        user = django_user_model.objects.create_user(f"{name}-user", password="pass-123-word")
        user.groups.add(
            Group.objects.get_or_create(name=name)[0]
        )  # transactional tests flush migrations data
        return user

    return make


@pytest.fixture
def source_with(request):
    made = []

    def make(count, prefix=b'{"n": '):
        top = rabbit.dead_letter(count, payload_prefix=prefix)
        made.append(top)
        conn = connection_create(
            name=top.dlq, kind="rabbitmq", url=AMQP_URL, username="guest", password="guest"
        )
        source = Source.objects.create(connection=conn, name=top.dlq, mode="queue", address=top.dlq)
        source_harvest(source=source)
        return source, top

    yield make
    for top in made:
        rabbit.delete(top)


def test_discard_and_resolve_by_filter_change_only_matching_rows(source_with, role):
    source, _ = source_with(4, prefix=b"plain-")
    operator = role("operator")
    first = source.dead_letters.order_by("id").first()
    assert dead_letters_discard(actor=operator, ids=[first.pk]) == 1
    assert (
        dead_letters_resolve(actor=operator, filters=DeadLetterFilter.parse({"source": [source.name]})) == 4
    )
    assert DeadLetter.objects.filter(status=DeadLetterStatus.RESOLVED).count() == 4
    assert AuditEvent.objects.filter(action="messages.discarded", count=1, actor=operator).exists()
    assert AuditEvent.objects.filter(action="messages.resolved", count=4).exists()


def test_a_viewer_cannot_discard(source_with, role):
    source, _ = source_with(1, prefix=b"plain-")
    with pytest.raises(PermissionDenied):
        dead_letters_discard(actor=role("viewer"), ids=list(source.dead_letters.values_list("id", flat=True)))
    assert DeadLetter.objects.filter(status=DeadLetterStatus.NEW).count() == 1


def test_an_edited_revision_is_redriven_and_the_original_kept(source_with, role):
    source, top = source_with(1, prefix=b'{"n": ')
    letter = source.dead_letters.get()
    letter.payload = b'{"n": 0}'
    letter.save(update_fields=["payload"])
    operator = role("operator")
    with pytest.raises(EditError) as err:
        dead_letter_revise(actor=operator, dead_letter=letter, payload=b"{broken")
    assert "payload" in err.value.errors
    edited_headers = [*letter.headers, ["fixed-by", {"t": "str", "v": "alice"}]]
    revision = dead_letter_revise(
        actor=operator,
        dead_letter=letter,
        payload=b'{"n": 1, "fixed": true}',
        headers=edited_headers,
        note="fix missing field",
    )
    job = redrive_job_create(actor=operator, ids=[letter.pk])
    while redrive_job_step(job_id=job.pk).more:
        pass
    (msg,) = rabbit.drain(top.work_queue)
    assert msg.body == b'{"n": 1, "fixed": true}' and msg.headers["fixed-by"] == "alice"
    letter.refresh_from_db()
    assert bytes(letter.payload) == b'{"n": 0}' and not headers.get(letter.headers, "fixed-by")
    assert RedriveAttempt.objects.get(job=job).revision_id == revision.pk


def test_error_group_lifecycle_is_audited(source_with, role):
    source, _ = source_with(2, prefix=b"plain-")
    group = source.error_groups.get()
    group = error_group_set_status(actor=role("operator"), group=group, status=ErrorGroupStatus.ACKNOWLEDGED)
    assert group.status == ErrorGroupStatus.ACKNOWLEDGED and group.status_changed_at
    with pytest.raises(EditError):
        error_group_set_status(actor=None, group=group, status="exploded")
    with pytest.raises(PermissionDenied):
        error_group_set_status(actor=role("viewer"), group=group, status=ErrorGroupStatus.IGNORED)
    assert AuditEvent.objects.filter(action="error_group.acknowledged").exists()
