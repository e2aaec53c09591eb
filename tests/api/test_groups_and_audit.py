"""error-groups/ (list, filters, status changes) and audit-events/ (read-only, filters)."""

import pytest

from dlqadmin.models import AuditEvent, ErrorGroup

pytestmark = pytest.mark.django_db

GROUPS, AUDIT = "/api/v1/error-groups/", "/api/v1/audit-events/"


def test_groups_list_filter_and_detail(as_viewer, store):
    orders, payments = store["sources"]
    listed = as_viewer.get(GROUPS).json()["results"]
    assert len(listed) == 4  # c and e share "CardError: card declined" on payments
    card = ErrorGroup.objects.get(error_class="CardError")
    assert card.count == 2
    only = as_viewer.get(f"{GROUPS}?source={payments.pk}&reason=exception").json()["results"]
    assert {g["id"] for g in only} == set(
        ErrorGroup.objects.filter(source=payments).values_list("id", flat=True)
    )
    detail = as_viewer.get(f"{GROUPS}{card.pk}/").json()
    assert detail["source_name"] == "payments" and detail["status"] == "open" and detail["count"] == 2
    assert as_viewer.get(f"{GROUPS}?status=nope").status_code == 400
    assert as_viewer.get(f"{GROUPS}?source=999999").status_code == 400


def test_status_changes_by_post_and_patch(as_operator, store):
    group = store["a"].error_group
    response = as_operator.post(f"{GROUPS}{group.pk}/status/", {"status": "acknowledged"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "acknowledged"
    response = as_operator.patch(f"{GROUPS}{group.pk}/", {"status": "ignored"}, format="json")
    assert response.json()["status"] == "ignored" and response.json()["status_changed_at"]
    assert as_operator.get(f"{GROUPS}?status=ignored").json()["results"][0]["id"] == group.pk
    for body in ({"status": "gone"}, {}, {"status": "open", "count": 1}, ["open"]):
        assert as_operator.patch(f"{GROUPS}{group.pk}/", body, format="json").status_code == 400
    assert as_operator.put(f"{GROUPS}{group.pk}/", {"status": "open"}, format="json").status_code == 405
    assert as_operator.delete(f"{GROUPS}{group.pk}/").status_code == 405
    assert AuditEvent.objects.filter(action="error_group.ignored", target_id=str(group.pk)).exists()


def test_audit_events_are_read_only_and_filterable(as_operator, as_admin, store):
    as_operator.post("/api/v1/messages/resolve/", {"ids": [store["a"].pk]}, format="json")
    as_admin.post("/api/v1/messages/discard/", {"ids": [store["c"].pk]}, format="json")
    events = as_operator.get(f"{AUDIT}?action_prefix=messages.").json()["results"]
    assert [(e["action"], e["actor_name"], e["count"]) for e in events] == [
        ("messages.discarded", "admin-role", 1),
        ("messages.resolved", "operator", 1),
    ]
    assert events[0]["remote_addr"] == "127.0.0.1"
    assert len(as_operator.get(f"{AUDIT}?actor=operator&action=messages.resolved").json()["results"]) == 1
    assert as_operator.get(f"{AUDIT}?since=2999-01-01T00:00:00Z").json()["results"] == []
    assert as_operator.get(f"{AUDIT}?since=tomorrow").status_code == 400
    assert as_operator.get(f"{AUDIT}{events[0]['id']}/").json()["action"] == "messages.discarded"
    assert as_admin.post(AUDIT, {}, format="json").status_code == 405
    assert as_admin.delete(f"{AUDIT}{events[0]['id']}/").status_code == 405


def test_audit_dates_with_any_offset_are_read_in_utc_and_out_of_range_is_400(as_admin, store):
    # found by schemathesis: +20:51 is ISO-8601 but beyond PostgreSQL's +-15:59 (was a 500)
    response = as_admin.get(f"{AUDIT}?since=0399-08-15T00:04:02.73%2B20:51")
    assert response.status_code == 200 and response.json()["results"]  # every event is later
    assert as_admin.get(f"{AUDIT}?until=0399-08-15T00:04:02.73%2B20:51").json()["results"] == []
    for key, value, message in [
        ("since", "0001-01-01T00:00:00%2B01:00", "'0001-01-01T00:00:00+01:00' is out of range"),
        ("until", "9999-12-31T23:59:59-01:00", "'9999-12-31T23:59:59-01:00' is out of range"),
        ("since", "2026-01-01T00:00:00%2B25:00", "is not an ISO-8601 date/time"),
        ("until", "2026-01-01%00", "is not an ISO-8601 date/time"),
    ]:
        response = as_admin.get(f"{AUDIT}?{key}={value}")
        assert response.status_code == 400, (key, value, response.content)
        assert message in response.json()["fields"][key]
