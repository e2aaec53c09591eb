"""Role x action matrix for the dashboard: every role tries every action; allowed ones succeed,
the others are a 403 and change nothing."""

import pytest
from django.urls import reverse

from dlqadmin.models import Connection, DeadLetter, DeadLetterStatus, RedriveJob
from tests.conftest import user_in_role
from tests.support.access_world import build

pytestmark = pytest.mark.django_db

V, OP, A = "viewer", "operator", "admin"
ALL = {V, OP, A}


def view_list(client, world):
    return client.get(reverse("dlq-messages"))


def view_detail(client, world):
    return client.get(reverse("dlq-message", args=[world.letter.pk]))


def redrive(client, world):
    return client.post(reverse("dlq-redrive"), {"confirm": "1", "ids": [world.letter.pk], "batch_size": "10"})


def discard(client, world):
    return client.post(reverse("dlq-messages-bulk"), {"action": "discard", "ids": [world.letter.pk]})


def resolve(client, world):
    return client.post(reverse("dlq-messages-bulk"), {"action": "resolve", "ids": [world.letter.pk]})


def edit(client, world):
    return client.get(reverse("dlq-message-edit", args=[world.letter.pk]))


def export(client, world):
    return client.post(reverse("dlq-messages-export"), {"ids": [world.letter.pk]})


def manage_connections(client, world):
    return client.post(
        reverse("dlq-connection-add"),
        {"name": "added", "kind": "kafka", "url": "127.0.0.1:9092", "tls_verify": "on"},
    )


# action -> (request, roles allowed, status when allowed, what it changed)
MATRIX = {
    "view list": (view_list, ALL, 200, None),
    "view detail": (view_detail, ALL, 200, None),
    "redrive": (redrive, {OP, A}, 302, lambda w: RedriveJob.objects.filter(total=1).exists()),
    "discard": (discard, {OP, A}, 302, lambda w: _status(w) == DeadLetterStatus.DISCARDED),
    "resolve": (resolve, {OP, A}, 302, lambda w: _status(w) == DeadLetterStatus.RESOLVED),
    "edit": (edit, {OP, A}, 200, None),
    "export": (export, ALL, 200, None),
    "manage connections": (
        manage_connections,
        {A},
        302,
        lambda w: Connection.objects.filter(name="added").exists(),
    ),
}


def _status(world) -> str:
    return DeadLetter.objects.get(pk=world.letter.pk).status


@pytest.mark.parametrize("role", [V, OP, A])
@pytest.mark.parametrize("action", list(MATRIX))
def test_each_role_may_do_exactly_its_actions_in_the_dashboard(django_user_model, client, role, action):
    world = build()
    request, allowed, status, changed = MATRIX[action]
    client.force_login(user_in_role(django_user_model, role))
    response = request(client, world)
    if role in allowed:
        assert response.status_code == status, (response.status_code, response.content[:500])
        assert changed is None or changed(world)
    else:
        assert response.status_code == 403, (response.status_code, response.content[:500])
        assert _status(world) == DeadLetterStatus.NEW
        assert not RedriveJob.objects.exists() and not Connection.objects.filter(name="added").exists()
