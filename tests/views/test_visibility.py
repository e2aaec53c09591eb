"""Per-source restrictions in the dashboard: a source restricted to another group does not exist
for a user (lists, counts, 404 for its messages and groups, bulk actions, redrive, export), while
members of that group and admins see it."""

import json

import pytest
from django.urls import reverse

from dlqadmin.models import DeadLetter, DeadLetterStatus, RedriveJob
from tests.conftest import user_in_role
from tests.support.access_world import build

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return build()


@pytest.fixture
def outsider(as_user, operator):
    """An operator who is not in the group the restricted source is shared with."""
    return as_user(operator)


@pytest.fixture
def insider(as_user, django_user_model, world):
    user = user_in_role(django_user_model, "operator")
    user.groups.add(world.payroll)
    return as_user(user)


def listed(response) -> list[int]:
    body = response.content.decode()
    return [int(chunk.split('"', 1)[0]) for chunk in body.split('name="ids" value="')[1:]]


def exported(response) -> list[int]:
    return [json.loads(line)["id"] for line in b"".join(response.streaming_content).decode().splitlines()]


def test_lists_counts_and_filters_show_only_visible_sources(world, outsider, insider, as_user, admin_user):
    response = outsider.get(reverse("dlq-messages"))
    assert listed(response) == [world.letter.pk]
    assert b"<strong data-total-count>1</strong>" in response.content
    assert world.secret.name not in response.content.decode()  # not even in the source filter
    assert listed(outsider.get(reverse("dlq-messages"), {"source": world.secret.name})) == []
    for client in (insider, as_user(admin_user)):
        assert set(listed(client.get(reverse("dlq-messages")))) == {world.letter.pk, world.hidden.pk}


def test_the_overview_groups_and_connections_pages_leave_the_source_out(world, outsider, insider):
    for name in ("dlq-overview", "dlq-groups", "dlq-connections"):
        body = outsider.get(reverse(name)).content.decode()
        assert world.secret.name not in body and "PayrollError" not in body, name
        assert world.secret.name in insider.get(reverse(name)).content.decode(), name


def test_messages_and_groups_of_an_invisible_source_are_404(world, outsider, insider):
    urls = [
        reverse("dlq-message", args=[world.hidden.pk]),
        reverse("dlq-message-payload", args=[world.hidden.pk]),
        reverse("dlq-message-edit", args=[world.hidden.pk]),
        reverse("dlq-group", args=[world.hidden.error_group_id]),
    ]
    for url in urls:
        assert outsider.get(url).status_code == 404, url
        assert insider.get(url).status_code == 200, url
    status_url = reverse("dlq-group-status", args=[world.hidden.error_group_id])
    assert outsider.post(status_url, {"status": "ignored"}).status_code == 404
    world.hidden.error_group.refresh_from_db()
    assert world.hidden.error_group.status == "open"


@pytest.mark.parametrize("action", ["discard", "resolve"])
def test_bulk_actions_by_ids_or_filter_skip_invisible_messages(world, outsider, action):
    outsider.post(reverse("dlq-messages-bulk"), {"action": action, "ids": [world.hidden.pk]})
    outsider.post(
        reverse("dlq-messages-bulk"),
        {"action": action, "select_all": "1", "filter": f"source={world.secret.name}"},
    )
    outsider.post(reverse("dlq-messages-bulk"), {"action": action, "select_all": "1", "filter": "status=new"})
    assert DeadLetter.objects.get(pk=world.hidden.pk).status == DeadLetterStatus.NEW
    assert DeadLetter.objects.get(pk=world.letter.pk).status != DeadLetterStatus.NEW


def test_a_redrive_by_ids_or_filter_never_includes_invisible_messages(world, outsider, insider):
    plan = outsider.post(reverse("dlq-redrive"), {"ids": [world.hidden.pk]}).content.decode()
    assert "<strong data-plan-count>0</strong>" in plan
    response = outsider.post(
        reverse("dlq-redrive"), {"confirm": "1", "ids": [world.hidden.pk], "batch_size": "5"}
    )
    assert response.status_code == 400 and b"nothing matches" in response.content
    response = outsider.post(
        reverse("dlq-redrive"), {"confirm": "1", "select_all": "1", "filter": "status=new", "batch_size": "5"}
    )
    job = RedriveJob.objects.get()
    assert response.status_code == 302
    assert list(job.attempts.values_list("dead_letter_id", flat=True)) == [world.letter.pk]
    assert DeadLetter.objects.get(pk=world.hidden.pk).status == DeadLetterStatus.NEW
    response = insider.post(
        reverse("dlq-redrive"), {"confirm": "1", "ids": [world.hidden.pk], "batch_size": "5"}
    )
    assert response.status_code == 302 and RedriveJob.objects.count() == 2


def test_exports_by_ids_or_filter_leave_invisible_messages_out(world, outsider, insider):
    both = {"ids": [world.letter.pk, world.hidden.pk]}
    assert exported(outsider.post(reverse("dlq-messages-export"), both)) == [world.letter.pk]
    everything = {"select_all": "1", "filter": "status=new"}
    assert exported(outsider.post(reverse("dlq-messages-export"), everything)) == [world.letter.pk]
    assert set(exported(insider.post(reverse("dlq-messages-export"), everything))) == {
        world.letter.pk,
        world.hidden.pk,
    }


def test_harvest_now_of_an_invisible_source_is_404(world, outsider):
    assert outsider.post(reverse("dlq-source-harvest", args=[world.secret.pk])).status_code == 404


def test_a_redrive_job_over_a_restricted_source_exists_only_for_those_who_may_see_it(
    world, outsider, insider, as_user, admin_user
):
    from dlqadmin.services.redrive.jobs import redrive_job_create

    hidden_job = redrive_job_create(actor=None, ids=[world.hidden.pk])
    open_job = redrive_job_create(actor=None, ids=[world.letter.pk])
    jobs_page = reverse("dlq-jobs")

    def job_links(client) -> set[int]:
        body = client.get(jobs_page).content.decode()
        return {job.pk for job in (hidden_job, open_job) if reverse("dlq-job", args=[job.pk]) in body}

    assert job_links(outsider) == {open_job.pk}
    for url in (
        reverse("dlq-job", args=[hidden_job.pk]),
        reverse("dlq-job-progress", args=[hidden_job.pk]),
    ):
        assert outsider.get(url).status_code == 404
    assert outsider.post(reverse("dlq-job-control", args=[hidden_job.pk, "cancel"])).status_code == 404
    assert RedriveJob.objects.get(pk=hidden_job.pk).status == "pending"  # the control did nothing
    assert outsider.get(reverse("dlq-job", args=[open_job.pk])).status_code == 200
    assert job_links(insider) == job_links(as_user(admin_user)) == {hidden_job.pk, open_job.pk}
    assert insider.get(reverse("dlq-job-progress", args=[hidden_job.pk])).status_code == 200

    # the API answers the same (session sign-in works there too)
    listed_by_api = {job["id"] for job in outsider.get("/api/v1/redrives/").json()["results"]}
    assert listed_by_api == {open_job.pk}
    assert outsider.get(f"/api/v1/redrives/{hidden_job.pk}/").status_code == 404
    assert insider.get(f"/api/v1/redrives/{hidden_job.pk}/").status_code == 200
