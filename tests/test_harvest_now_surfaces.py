""" "Harvest now" from the dashboard, the API and the Django admin is one service call: it
harvests at most the one limit, writes exactly one audit event, and on a failure records it on the
source and in that one event."""

import html

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from dlqadmin.models import AuditEvent, DeadLetter, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.sources import HARVEST_NOW_LIMIT
from tests.api.conftest import token_client
from tests.conftest import AMQP_URL, unique
from tests.support import rabbit

pytestmark = pytest.mark.django_db
SURFACES = ["dashboard", "api", "admin"]


@pytest.fixture
def topology():
    made = []

    def make(count):
        made.append(rabbit.dead_letter(count))
        return made[-1]

    yield make
    for top in made:
        rabbit.delete(top)


def rabbit_source(address: str) -> Source:
    conn = connection_create(
        name=unique("rmq"), kind="rabbitmq", url=AMQP_URL, username="guest", password="guest"
    )
    return Source.objects.create(connection=conn, name=address, mode="queue", address=address)


def client_for(surface: str, user):
    """A signed-in client of ``surface`` (set up before counting audit events)."""
    if surface == "api":
        return token_client(user)
    if surface == "admin":
        user.is_staff = True
        user.save()
        user.user_permissions.add(Permission.objects.get(codename="view_source"))
    client = Client()
    client.force_login(user)
    return client


def harvest_now(surface: str, client, source: Source) -> tuple[int, str]:
    """(status, what the person is told) of a harvest now of ``source`` through ``surface``."""
    if surface == "api":
        response = client.post(f"/api/v1/sources/{source.pk}/harvest/", {}, format="json")
        return response.status_code, response.content.decode()
    if surface == "dashboard":
        response = client.post(reverse("dlq-source-harvest", args=[source.pk]), follow=True)
    else:
        response = client.post(
            reverse("admin:dlqadmin_source_changelist"),
            {"action": "harvest_now", "_selected_action": [source.pk]},
            follow=True,
        )
    return response.status_code, html.unescape(response.content.decode())


@pytest.mark.parametrize("surface", SURFACES)
def test_each_surface_harvests_and_writes_exactly_one_audit_event(surface, operator, topology):
    source = rabbit_source(topology(3).dlq)
    client = client_for(surface, operator)
    before = AuditEvent.objects.count()
    status, answer = harvest_now(surface, client, source)
    assert status == 200 and DeadLetter.objects.filter(source=source).count() == 3
    if surface != "api":
        assert "3 new, 0 already stored" in answer
    event = AuditEvent.objects.get(action="source.harvest")
    assert (event.actor, event.target_id, event.count) == (operator, str(source.pk), 3)
    assert event.detail["limit"] == HARVEST_NOW_LIMIT  # one default for every surface
    assert AuditEvent.objects.count() == before + 1


@pytest.mark.parametrize("surface", SURFACES)
def test_a_failed_harvest_is_recorded_on_the_source_and_in_one_audit_event(surface, operator):
    source = rabbit_source(unique("missing-dlq"))  # no such queue on the broker
    client = client_for(surface, operator)
    before = AuditEvent.objects.count()
    status, answer = harvest_now(surface, client, source)
    source.refresh_from_db()
    assert source.last_error and source.name in answer and "failed" in answer
    assert status in (502, 503) if surface == "api" else status == 200
    event = AuditEvent.objects.get(action="source.harvest")
    assert event.count == 0 and event.detail["error"] == source.last_error
    assert AuditEvent.objects.count() == before + 1


def test_a_viewer_cannot_harvest_from_the_admin(viewer, topology):
    source = rabbit_source(topology(1).dlq)
    harvest_now("admin", client_for("admin", viewer), source)
    assert not DeadLetter.objects.exists() and not AuditEvent.objects.filter(action="source.harvest").exists()
