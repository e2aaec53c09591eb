"""Admin bulk actions go through the services: permission-gated, audited, jobs for redrive."""

import json

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from dlqadmin.models import AuditEvent, DeadLetter, DeadLetterStatus, ErrorGroupStatus, RedriveJob, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import source_harvest
from tests.conftest import AMQP_URL
from tests.support import rabbit

pytestmark = pytest.mark.django_db(transaction=True)
CHANGELIST = "admin:dlqadmin_deadletter_changelist"


@pytest.fixture
def staff(django_user_model):
    def make(role):
        user = django_user_model.objects.create_user(f"staff-{role}", password="pass-123-word", is_staff=True)
        group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(group)
        from django.contrib.auth.models import Permission

        # the roles migration grants these; transactional tests flush it, so grant again
        user.user_permissions.add(
            *Permission.objects.filter(
                codename__in=["view_deadletter", "view_errorgroup", "change_errorgroup"]
            )
        )
        return user

    return make


@pytest.fixture
def stored():
    top = rabbit.dead_letter(3)
    conn = connection_create(name=top.dlq, kind="rabbitmq", url=AMQP_URL, username="guest", password="guest")
    source = Source.objects.create(connection=conn, name=top.dlq, mode="queue", address=top.dlq)
    source_harvest(source=source)
    yield source, top
    rabbit.delete(top)


def post_action(client, action, ids, url=CHANGELIST):
    return client.post(reverse(url), {"action": action, "_selected_action": ids}, follow=True)


def test_redrive_selected_creates_a_job_and_links_to_it(client, staff, stored):
    source, _ = stored
    client.force_login(staff("operator"))
    ids = list(source.dead_letters.values_list("id", flat=True))
    response = post_action(client, "redrive_selected", ids)
    job = RedriveJob.objects.get()
    assert job.total == 3
    assert reverse("admin:dlqadmin_redrivejob_change", args=[job.pk]) in response.content.decode()
    assert AuditEvent.objects.filter(action="redrive.create", count=3).exists()


def test_discard_and_resolve_selected(client, staff, stored):
    source, _ = stored
    client.force_login(staff("operator"))
    first, *rest = source.dead_letters.order_by("id").values_list("id", flat=True)
    post_action(client, "discard_selected", [first])
    post_action(client, "resolve_selected", rest)
    assert DeadLetter.objects.get(pk=first).status == DeadLetterStatus.DISCARDED
    assert DeadLetter.objects.filter(status=DeadLetterStatus.RESOLVED).count() == 2


def test_a_viewer_is_not_offered_state_changing_actions(client, staff, stored):
    source, _ = stored
    client.force_login(staff("viewer"))
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert "export_jsonl" in page
    assert "redrive_selected" not in page and "discard_selected" not in page
    ids = list(source.dead_letters.values_list("id", flat=True))
    post_action(client, "discard_selected", ids)
    assert DeadLetter.objects.filter(status=DeadLetterStatus.NEW).count() == 3


def test_export_selected_as_jsonl_and_csv(client, staff, stored):
    source, _ = stored
    client.force_login(staff("viewer"))
    ids = list(source.dead_letters.values_list("id", flat=True))
    response = client.post(reverse(CHANGELIST), {"action": "export_jsonl", "_selected_action": ids})
    lines = b"".join(response.streaming_content).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted(r["id"] for r in records) == sorted(ids)
    assert all(r["payload_b64"] and r["headers"] for r in records)
    response = client.post(reverse(CHANGELIST), {"action": "export_csv", "_selected_action": ids})
    csv_text = b"".join(response.streaming_content).decode()
    assert csv_text.splitlines()[0].startswith("id,source,status") and len(csv_text.splitlines()) == 4


def test_error_group_actions(client, staff, stored):
    source, _ = stored
    client.force_login(staff("operator"))
    group = source.error_groups.get()
    post_action(client, "ignore_groups", [group.pk], url="admin:dlqadmin_errorgroup_changelist")
    group.refresh_from_db()
    assert group.status == ErrorGroupStatus.IGNORED
    post_action(client, "redrive_groups", [group.pk], url="admin:dlqadmin_errorgroup_changelist")
    assert RedriveJob.objects.get().total == 3


def test_changing_a_groups_auto_retry_goes_through_the_service_and_is_audited(client, staff, stored):
    source, _ = stored
    group = source.error_groups.get()
    url = reverse("admin:dlqadmin_errorgroup_change", args=[group.pk])
    client.force_login(staff("viewer"))
    assert client.post(url, {"auto_retry": "true", "_save": "Save"}).status_code == 403
    group.refresh_from_db()
    assert group.auto_retry is None and not AuditEvent.objects.filter(action="error_group.update").exists()

    client.force_login(staff("operator"))
    response = client.post(url, {"auto_retry": "false", "_save": "Save"})
    assert response.status_code == 302, response.content.decode()[:2000]
    group.refresh_from_db()
    assert group.auto_retry is False and group.count == 3
    event = AuditEvent.objects.get(action="error_group.update")
    assert event.target_id == str(group.pk) and event.actor.username == "staff-operator"
    assert event.detail == {"auto_retry": False, "before": None}
    client.post(url, {"auto_retry": "false", "_save": "Save"})  # nothing changed: nothing to record
    assert AuditEvent.objects.filter(action="error_group.update").count() == 1
