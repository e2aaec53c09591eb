"""Authentication: hashed tokens from the command and the API, revocation, sessions, throttling."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from dlqadmin.models import ApiToken, AuditEvent
from dlqadmin.services.tokens import key_hash, token_authenticate

pytestmark = pytest.mark.django_db

URL = "/api/v1/messages/"


def create_via_command(username: str, *args) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", username, *args, stdout=out, stderr=err)
    assert "not shown again" in err.getvalue()
    return out.getvalue().strip()


def with_key(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_command_token_works_is_stored_hashed_and_stops_working_when_revoked(operator):
    key = create_via_command("operator", "--name", "ci")
    token = ApiToken.objects.get()
    assert token.name == "ci" and token.user == operator and token.prefix == key[:8]
    assert token.key_hash == key_hash(key) != key and len(key) >= 40
    # the raw key is nowhere in the database
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM dlqadmin_apitoken")
        assert key not in repr(cursor.fetchall())
    client = with_key(key)
    assert client.get(URL).status_code == 200
    response = client.post(f"/api/v1/tokens/{token.pk}/revoke/")
    assert response.status_code == 200 and response.json()["active"] is False
    response = client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["error"] == "invalid, revoked or expired token"


def test_the_command_refuses_unknown_users():
    with pytest.raises(CommandError, match="no user"):
        call_command("create_api_token", "nobody", stdout=io.StringIO())


def test_last_used_is_recorded_at_most_once_a_minute(viewer):
    key = create_via_command("viewer")
    with_key(key).get(URL)
    token = ApiToken.objects.get()
    first = token.last_used_at
    assert first is not None
    with_key(key).get(URL)
    token.refresh_from_db()
    assert token.last_used_at == first
    ApiToken.objects.update(last_used_at=timezone.now() - timedelta(minutes=2))
    assert token_authenticate(key).last_used_at > first


def test_inactive_users_and_garbage_keys_are_401(viewer):
    key = create_via_command("viewer")
    viewer.is_active = False
    viewer.save()
    assert with_key(key).get(URL).status_code == 401
    for header in ("Token", "Token a b", "Token " + "x" * 500, "Token \u00e9t\u00e9"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        assert client.get(URL).status_code == 401, header


def test_no_credentials_is_401_with_a_json_error(anon):
    response = anon.get(URL)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert response.json() == {"error": "Authentication credentials were not provided.", "fields": {}}
    assert anon.post(f"{URL}discard/", {"ids": [1]}, format="json").status_code == 401


def test_session_login_works_and_writes_need_csrf(viewer, operator):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(viewer)
    assert client.get(URL).status_code == 200
    client.force_login(operator)
    response = client.post(f"{URL}discard/", {"ids": [1]}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["error"]


def test_users_manage_their_own_tokens_and_admins_see_all(as_viewer, as_admin, viewer, operator):
    response = as_viewer.post("/api/v1/tokens/", {"name": "laptop"}, format="json")
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    created = response.json()
    assert created["user"] == "viewer" and created["prefix"] == created["key"][:8]
    assert with_key(created["key"]).get(URL).status_code == 200
    listed = as_viewer.get("/api/v1/tokens/").json()["results"]
    assert {t["name"] for t in listed} == {"test", "laptop"} and all("key" not in t for t in listed)
    assert AuditEvent.objects.filter(action="token.create", actor_name="viewer").exists()

    other = create_via_command("operator")
    other_token = ApiToken.objects.get(key_hash=key_hash(other))
    assert as_viewer.get(f"/api/v1/tokens/{other_token.pk}/").status_code == 404
    assert as_viewer.delete(f"/api/v1/tokens/{other_token.pk}/").status_code == 404
    assert with_key(other).get(URL).status_code == 200

    users = {t["user"] for t in as_admin.get("/api/v1/tokens/").json()["results"]}
    assert users == {"viewer", "operator", "admin-role"}
    assert {t["user"] for t in as_admin.get("/api/v1/tokens/?user=operator").json()["results"]} == {
        "operator"
    }
    assert as_admin.delete(f"/api/v1/tokens/{other_token.pk}/").status_code == 204
    assert with_key(other).get(URL).status_code == 401
    assert AuditEvent.objects.filter(action="token.revoke", actor_name="admin-role").exists()
    assert len(as_admin.get("/api/v1/tokens/?active=true").json()["results"]) == 3


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "x" * 101}, {"name": "a", "user": 1}, []])
def test_bad_token_requests_are_400(as_viewer, body):
    response = as_viewer.post("/api/v1/tokens/", body, format="json")
    assert response.status_code == 400 and response.json()["error"]


def test_users_are_throttled_with_429(as_viewer, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"dlq-user": "3/min"}}
    codes = [as_viewer.get(URL).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    response = as_viewer.get(URL)
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert response.json()["error"].startswith("too many requests")


def test_failed_logins_are_throttled_too(anon, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"dlq-anon": "2/min"}}
    anon.credentials(HTTP_AUTHORIZATION="Token guess")
    assert [anon.get(URL).status_code for _ in range(3)] == [401, 401, 429]
