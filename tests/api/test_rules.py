"""alert-rules/, alert-deliveries/ and masking-rules/: admins manage them; audited; applied."""

import base64
import json

import pytest

from dlqadmin.models import AlertDelivery, AlertRule, AuditEvent, DeadLetter, MaskingRule, Source
from dlqadmin.services.connections import connection_create

pytestmark = pytest.mark.django_db


def test_an_admin_manages_alert_rules_and_each_change_is_audited(as_admin):
    response = as_admin.post(
        "/api/v1/alert-rules/",
        {
            "name": "new groups",
            "kind": "new_error_group",
            "channel": "webhook",
            "target": "https://hooks.example.com/dlq",
            "slack_format": True,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    rule_id = response.json()["id"]
    assert (
        as_admin.patch(f"/api/v1/alert-rules/{rule_id}/", {"enabled": False}, format="json").status_code
        == 200
    )
    assert AlertRule.objects.get(pk=rule_id).enabled is False
    assert as_admin.delete(f"/api/v1/alert-rules/{rule_id}/").status_code == 204
    actions = list(AuditEvent.objects.filter(target_type="alertrule").values_list("action", flat=True))
    assert sorted(actions) == ["alert_rule.create", "alert_rule.delete", "alert_rule.update"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "webhook", "target": "file:///etc/passwd"}, "target"),
        ({"channel": "email", "target": "not-an-email"}, "target"),
        ({"channel": "pigeon", "target": "x"}, "channel"),
    ],
)
def test_bad_alert_rules_are_field_errors(as_admin, body, field):
    response = as_admin.post(
        "/api/v1/alert-rules/", {"name": "r", "kind": "job_failed", **body}, format="json"
    )
    assert response.status_code == 400
    assert field in response.json()["fields"], response.json()
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize("who", ["as_viewer", "as_operator"])
def test_only_admins_manage_rules(request, who):
    client = request.getfixturevalue(who)
    for path in ("/api/v1/alert-rules/", "/api/v1/masking-rules/"):
        assert client.get(path).status_code == 403
        assert client.post(path, {"name": "x"}, format="json").status_code == 403


def test_deliveries_are_visible_to_operators_not_viewers(as_operator, as_viewer):
    rule = AlertRule.objects.create(name="r", kind="job_failed", channel="email", target="ops@example.com")
    AlertDelivery.objects.create(
        rule=rule,
        dedup_key="job:1",
        window_start="2026-11-26T12:00:00Z",
        subject="Redrive job #1 failed",
        status="failed",
        error="smtp down",
    )
    body = as_operator.get("/api/v1/alert-deliveries/").json()
    (item,) = body["results"]
    assert item["status"] == "failed" and item["error"] == "smtp down" and item["rule_name"] == "r"
    assert as_viewer.get("/api/v1/alert-deliveries/").status_code == 403


def test_a_masking_rule_made_through_the_api_masks_what_viewers_get(as_admin, as_viewer, as_operator):
    conn = connection_create(name="rmq", kind="rabbitmq", url="amqp://127.0.0.1:5672/")
    source = Source.objects.create(connection=conn, name="orders", mode="queue", address="orders.dlq")
    letter = DeadLetter.objects.create(
        source=source, position="p", payload=json.dumps({"card": "4111111111111111", "id": 1}).encode()
    )
    response = as_admin.post(
        "/api/v1/masking-rules/",
        {
            "name": "cards",
            "kind": "json_path",
            "pattern": "card",
            "replacement": "<hidden>",
            "sources": [source.pk],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert MaskingRule.objects.get().sources.get() == source
    seen = as_viewer.get(f"/api/v1/messages/{letter.pk}/").json()
    assert "4111111111111111" not in json.dumps(seen)
    assert json.loads(base64.b64decode(seen["payload_base64"]))["card"] == "<hidden>"
    full = as_operator.get(f"/api/v1/messages/{letter.pk}/").json()
    assert json.loads(base64.b64decode(full["payload_base64"]))["card"] == "4111111111111111"
    bad = as_admin.post(
        "/api/v1/masking-rules/", {"name": "bad", "kind": "regex", "pattern": "([oops"}, format="json"
    )
    assert bad.status_code == 400 and "pattern" in bad.json()["fields"]
