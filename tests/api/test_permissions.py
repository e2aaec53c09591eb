"""Every endpoint per role: viewer reads, operator acts on messages, admin manages connections,
sources and everyone's tokens. Denials are 403 with the action named; no credentials is 401."""

import pytest

from dlqadmin.models import RedriveJob
from tests.api.conftest import token_client
from tests.conftest import AMQP_URL, user_in_role

pytestmark = pytest.mark.django_db

V, OP, A = "viewer", "operator", "admin"
ALL = {V, OP, A}

# (method, path, body, roles allowed); {conn} {source} {msg} {group} {job} {event} {token} filled in
MATRIX = [
    ("get", "connections/", None, ALL),
    ("post", "connections/", {"name": "new", "kind": "kafka", "url": "127.0.0.1:9092"}, {A}),
    ("get", "connections/{conn}/", None, ALL),
    ("patch", "connections/{conn}/", {"username": "guest"}, {A}),
    ("put", "connections/{conn}/", {"name": "rmq", "kind": "rabbitmq", "url": AMQP_URL}, {A}),
    ("delete", "connections/{spare}/", None, {A}),
    ("get", "connections/{conn}/health/", None, ALL),
    ("get", "connections/{conn}/discover/", None, {A}),
    ("get", "sources/", None, ALL),
    ("post", "sources/", {"name": "s2", "connection": "{conn}", "mode": "queue", "address": "q2"}, {A}),
    ("get", "sources/{source}/", None, ALL),
    ("patch", "sources/{source}/", {"enabled": False}, {A}),
    ("delete", "sources/{empty_source}/", None, {A}),
    ("post", "sources/{empty_source}/harvest/", {"limit": 1}, {OP, A}),
    ("get", "messages/", None, ALL),
    ("get", "messages/{msg}/", None, ALL),
    ("patch", "messages/{msg}/", {"payload_text": '{{"order": 9}}'}, {OP, A}),
    ("post", "messages/discard/", {"ids": ["{msg}"]}, {OP, A}),
    ("post", "messages/resolve/", {"ids": ["{msg}"]}, {OP, A}),
    ("post", "messages/archive/", {"ids": ["{msg}"]}, {OP, A}),
    ("post", "redrives/", {"ids": ["{msg}"], "dry_run": True}, {OP, A}),
    ("post", "redrives/", {"ids": ["{msg}"]}, {OP, A}),
    ("get", "redrives/", None, ALL),
    ("get", "redrives/{job}/", None, ALL),
    ("post", "redrives/{job}/pause/", None, {OP, A}),
    ("post", "redrives/{job}/resume/", None, {OP, A}),
    ("post", "redrives/{job}/cancel/", None, {OP, A}),
    ("get", "error-groups/", None, ALL),
    ("get", "error-groups/{group}/", None, ALL),
    ("post", "error-groups/{group}/status/", {"status": "acknowledged"}, {OP, A}),
    ("patch", "error-groups/{group}/", {"status": "open"}, {OP, A}),
    ("get", "audit-events/", None, {OP, A}),
    ("get", "audit-events/{event}/", None, {OP, A}),
    ("get", "tokens/", None, ALL),
    ("post", "tokens/", {"name": "x"}, ALL),
    ("get", "schema/", None, ALL),
]


@pytest.fixture
def world(store, django_user_model):
    from dlqadmin.models import AuditEvent, Connection, Source

    orders, _ = store["sources"]
    spare = Connection.objects.create(name="spare", kind="kafka", url="127.0.0.1:9092")
    empty = Source.objects.create(
        connection=orders.connection, name="empty", mode="queue", address="t.none.q"
    )
    job = RedriveJob.objects.create(status="running", total=0)
    event = AuditEvent.objects.create(action="test.event")
    return {
        "conn": orders.connection_id,
        "spare": spare.pk,
        "source": orders.pk,
        "empty_source": empty.pk,
        "msg": store["a"].pk,
        "group": store["a"].error_group_id,
        "job": job.pk,
        "event": event.pk,
    }


def fill(value, ids):
    if isinstance(value, str):
        filled = value.format(**ids)
        return int(filled) if value.startswith("{") and filled.isdigit() else filled
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


@pytest.mark.parametrize("role", [V, OP, A])
@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"), MATRIX, ids=[f"{m} {p}" for m, p, *_ in MATRIX]
)
def test_each_role_may_do_exactly_its_actions(world, django_user_model, role, method, path, body, allowed):
    client = token_client(user_in_role(django_user_model, role))
    url = "/api/v1/" + fill(path, world)
    response = getattr(client, method)(url, fill(body, world), format="json")
    if role in allowed:
        assert response.status_code not in (401, 403, 500), (response.status_code, response.content)
    else:
        assert response.status_code == 403, (response.status_code, response.content)
        assert response.json()["error"].startswith("your role does not allow")


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"), MATRIX, ids=[f"{m} {p}" for m, p, *_ in MATRIX]
)
def test_no_credentials_is_always_401(world, anon, method, path, body, allowed):
    response = getattr(anon, method)("/api/v1/" + fill(path, world), fill(body, world), format="json")
    assert response.status_code == 401, (response.status_code, response.content)


def test_a_user_without_a_role_may_do_nothing(world, django_user_model):
    nobody = django_user_model.objects.create_user("nobody", password="pass-123-word")
    client = token_client(nobody)
    assert client.get("/api/v1/messages/").status_code == 403
    assert client.post("/api/v1/tokens/", {"name": "x"}, format="json").status_code == 403


def test_superusers_may_do_everything(world, django_user_model):
    root = django_user_model.objects.create_superuser("root", password="pass-123-word")
    client = token_client(root)
    assert client.get("/api/v1/audit-events/").status_code == 200
    assert (
        client.patch(f"/api/v1/sources/{world['source']}/", {"enabled": True}, format="json").status_code
        == 200
    )
