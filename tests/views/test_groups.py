"""Error groups: list with counts, sparklines and lifecycle actions; a group's page."""

import pytest
from django.urls import reverse

from dlqadmin.models import AuditEvent, DeadLetter, ErrorGroup
from tests.views.conftest import HOSTILE, harvested

pytestmark = pytest.mark.django_db


def test_open_groups_are_listed_with_counts_times_and_a_sparkline(as_user, viewer, store):
    store(harvested(error="order 1 not found"), harvested(error="order 2 not found"), harvested(error="boom"))
    body = as_user(viewer).get(reverse("dlq-groups")).content.decode()
    assert body.count('<tr id="group-') == 2
    assert "order &lt;n&gt; not found" in body
    assert '<td class="num">2</td>' in body
    assert '<svg class="spark"' in body and "<polyline points=" in body
    assert "<time datetime=" in body


def test_a_viewer_gets_no_status_buttons(as_user, viewer, store):
    store(harvested())
    body = as_user(viewer).get(reverse("dlq-groups")).content.decode()
    assert ">Resolve<" not in body and ">Ignore<" not in body


def test_the_status_tabs_filter_the_list(as_user, operator, store):
    store(harvested(error="a"), harvested(error="b b"))
    first = ErrorGroup.objects.order_by("id").first()
    ErrorGroup.objects.filter(pk=first.pk).update(status="ignored")
    client = as_user(operator)
    assert client.get(reverse("dlq-groups")).content.decode().count('<tr id="group-') == 1
    ignored = client.get(reverse("dlq-groups"), {"status": "ignored"}).content.decode()
    assert f'id="group-{first.pk}"' in ignored and ignored.count('<tr id="group-') == 1
    assert client.get(reverse("dlq-groups"), {"status": "all"}).content.decode().count('<tr id="group-') == 2


def test_an_operator_resolves_a_group_from_the_list_with_htmx(as_user, operator, store):
    group = store(harvested())[0].error_group
    response = as_user(operator).post(
        reverse("dlq-group-status", args=[group.pk]),
        {"status": "resolved", "next": "list"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.startswith(f'<tr id="group-{group.pk}"') and "Resolved" in body
    group.refresh_from_db()
    assert group.status == "resolved"
    assert AuditEvent.objects.filter(action="error_group.resolved").exists()


def test_a_status_change_without_htmx_redirects_back(as_user, operator, store):
    group = store(harvested())[0].error_group
    response = as_user(operator).post(
        reverse("dlq-group-status", args=[group.pk]), {"status": "acknowledged"}
    )
    assert response.status_code == 302 and response["Location"] == reverse("dlq-group", args=[group.pk])


def test_an_unknown_status_is_refused(as_user, operator, store):
    group = store(harvested())[0].error_group
    response = as_user(operator).post(
        reverse("dlq-group-status", args=[group.pk]), {"status": "exploded"}, follow=True
    )
    assert b"Unknown status" in response.content
    group.refresh_from_db()
    assert group.status == "open"


def test_a_viewer_cannot_change_a_group(as_user, viewer, store):
    group = store(harvested())[0].error_group
    assert (
        as_user(viewer).post(reverse("dlq-group-status", args=[group.pk]), {"status": "ignored"}).status_code
        == 403
    )


def test_the_group_page_lists_its_messages_and_offers_redrive_of_the_open_ones(as_user, operator, store):
    a, b = store(harvested(error="order 1 not found"), harvested(error="order 2 not found"))
    other = store(harvested(error="something else"))[0]
    DeadLetter.objects.filter(pk=b.pk).update(status="redriven")
    response = as_user(operator).get(reverse("dlq-group", args=[a.error_group_id]))
    body = response.content.decode()
    assert {s: n for s, n in response.context["counts"].items() if n} == {"new": 1, "redriven": 1}
    status_links = body.split('class="status-counts"')[1].split("</ul>")[0]
    assert f"error_group={a.error_group_id}&status=new" in status_links
    assert f"error_group={a.error_group_id}&status=redriven" in status_links
    assert "status=failed" not in status_links  # a status with no messages is not listed
    assert f'name="ids" value="{a.pk}"' in body and f'name="ids" value="{b.pk}"' in body
    assert f'name="ids" value="{other.pk}"' not in body
    assert "Redrive group (1)" in body
    assert f"/redrive/?error_group={a.error_group_id}&amp;status=new&amp;status=failed" in body


def test_the_group_page_escapes_the_pattern_and_sample(as_user, viewer, store):
    letter = store(harvested(error=HOSTILE, error_class=HOSTILE))[0]
    body = as_user(viewer).get(reverse("dlq-group", args=[letter.error_group_id])).content.decode()
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "Redrive group" not in body


def test_a_viewer_cannot_open_the_redrive_dialog_for_a_group(as_user, viewer, store):
    letter = store(harvested())[0]
    assert (
        as_user(viewer).get(reverse("dlq-redrive"), {"error_group": letter.error_group_id}).status_code == 403
    )
