"""The API's role x action matrix (the same actions as the dashboard's), per-source restrictions
on every read and write, and masked values that cannot be found by searching.

The API has no export endpoint (the list and detail are its read); test_permissions.py covers
every endpoint per role."""

import base64

import pytest

from dlqadmin.models import Connection, DeadLetter, DeadLetterStatus, RedriveJob
from tests.api.conftest import token_client
from tests.conftest import user_in_role
from tests.support.access_world import CARD, EMAIL, TOKEN, assert_no_secrets, build

pytestmark = pytest.mark.django_db
URL = "/api/v1/messages/"
V, OP, A = "viewer", "operator", "admin"
ALL = {V, OP, A}


@pytest.fixture
def world():
    return build()


# action -> (method, path, body, roles allowed, status when allowed)
MATRIX = {
    "view list": ("get", "messages/", None, ALL, 200),
    "view detail": ("get", "messages/{msg}/", None, ALL, 200),
    "redrive": ("post", "redrives/", {"ids": ["{msg}"]}, {OP, A}, 201),
    "discard": ("post", "messages/discard/", {"ids": ["{msg}"]}, {OP, A}, 200),
    "resolve": ("post", "messages/resolve/", {"ids": ["{msg}"]}, {OP, A}, 200),
    "edit": ("patch", "messages/{msg}/", {"payload_text": '{{"order": 8}}'}, {OP, A}, 200),
    "manage connections": (
        "post",
        "connections/",
        {"name": "added", "kind": "kafka", "url": "h:9092"},
        {A},
        201,
    ),
}


def fill(value, msg: int):
    if isinstance(value, str):
        return msg if value == "{msg}" else value.format(msg=msg)
    if isinstance(value, dict):
        return {k: fill(v, msg) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, msg) for v in value]
    return value


@pytest.mark.parametrize("role", [V, OP, A])
@pytest.mark.parametrize("action", list(MATRIX))
def test_each_role_may_do_exactly_its_actions_in_the_api(world, django_user_model, role, action):
    method, path, body, allowed, status = MATRIX[action]
    client = token_client(user_in_role(django_user_model, role))
    response = getattr(client, method)(
        "/api/v1/" + fill(path, world.letter.pk), fill(body, world.letter.pk), format="json"
    )
    if role in allowed:
        assert response.status_code == status, response.content
    else:
        assert response.status_code == 403, response.content
        assert DeadLetter.objects.get(pk=world.letter.pk).status == DeadLetterStatus.NEW
        assert not RedriveJob.objects.exists() and not Connection.objects.filter(name="added").exists()
        assert not world.letter.revisions.exists()


# ---- per-source restrictions -------------------------------------------------------------------
@pytest.fixture
def outsider(operator):
    return token_client(operator)


@pytest.fixture
def insider(django_user_model, world):
    user = user_in_role(django_user_model, "operator")
    user.groups.add(world.payroll)
    return token_client(user)


def test_reads_leave_the_restricted_source_out(world, outsider, insider):
    assert [m["id"] for m in outsider.get(URL).json()["results"]] == [world.letter.pk]
    assert outsider.get(f"{URL}?source={world.secret.name}").json()["results"] == []
    assert outsider.get(f"{URL}{world.hidden.pk}/").status_code == 404
    assert world.secret.name not in str(outsider.get("/api/v1/sources/").json())
    assert outsider.get(f"/api/v1/error-groups/{world.hidden.error_group_id}/").status_code == 404
    assert len(insider.get(URL).json()["results"]) == 2
    assert insider.get(f"{URL}{world.hidden.pk}/").status_code == 200


def test_writes_by_ids_or_filter_never_touch_the_restricted_source(world, outsider, insider):
    hidden = {"ids": [world.hidden.pk]}
    by_source = {"filter": {"source": [world.secret.name]}}
    for action in ("discard", "resolve", "archive"):
        for body in (hidden, by_source):
            response = outsider.post(f"{URL}{action}/", body, format="json")
            assert response.status_code == 200 and response.json() == {"count": 0}, (action, body)
    assert (
        outsider.patch(f"{URL}{world.hidden.pk}/", {"payload_text": "{}"}, format="json").status_code == 404
    )
    response = outsider.post(
        f"/api/v1/error-groups/{world.hidden.error_group_id}/status/", {"status": "ignored"}, format="json"
    )
    assert response.status_code == 404
    plan = outsider.post("/api/v1/redrives/", {**by_source, "dry_run": True}, format="json").json()
    assert plan["total"] == 0
    for body in (hidden, by_source):
        response = outsider.post("/api/v1/redrives/", body, format="json")
        assert response.status_code == 400 and "nothing matches" in response.json()["error"], body
    everything = {"filter": {"status": ["new"]}}
    assert (
        outsider.post("/api/v1/redrives/", {**everything, "dry_run": True}, format="json").json()["total"]
        == 1
    )
    assert DeadLetter.objects.get(pk=world.hidden.pk).status == DeadLetterStatus.NEW
    assert not RedriveJob.objects.exists()
    assert insider.post(f"{URL}discard/", hidden, format="json").json() == {"count": 1}


# ---- masking -------------------------------------------------------------------------------------
def test_the_detail_is_masked_for_a_viewer(world, viewer, operator):
    body = token_client(viewer).get(f"{URL}{world.letter.pk}/").json()
    assert body["payload_masked"] is True
    assert_no_secrets(str(body))
    assert_no_secrets(base64.b64decode(body["payload_base64"]))
    assert body["payload_json"]["customer"]["email"] == "***"
    full = token_client(operator).get(f"{URL}{world.letter.pk}/").json()
    assert full["payload_json"]["customer"]["email"] == EMAIL and TOKEN in str(full["headers"])


@pytest.mark.parametrize("query", [f"q={EMAIL}", f"q={CARD}", f"header=Authorization:Bearer {TOKEN}"])
def test_a_viewer_cannot_find_a_masked_value_by_searching(world, viewer, operator, query):
    assert token_client(viewer).get(f"{URL}?{query}").json()["results"] == []
    assert [m["id"] for m in token_client(operator).get(f"{URL}?{query}").json()["results"]] == [
        world.letter.pk
    ]


def test_a_filter_selection_for_a_viewer_would_not_match_masked_values_either(world, django_user_model):
    """The same filter language selects for writes: a masked user's filter is as blind there."""
    from dlqadmin.selectors import DeadLetterFilter, dead_letters_for

    viewer = user_in_role(django_user_model, "viewer")
    assert not dead_letters_for(viewer, DeadLetterFilter.parse({"q": EMAIL})).exists()
    assert dead_letters_for(None, DeadLetterFilter.parse({"q": EMAIL})).count() == 1
