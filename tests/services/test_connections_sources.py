"""Connection and source services: the one write path of the dashboard, the API and the admin
(role check, validation, audit, write-only credentials)."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import ProtectedError

from dlqadmin.models import AuditEvent, Connection, DeadLetter, Source
from dlqadmin.services.connections import connection_create, connection_delete, connection_update
from dlqadmin.services.sources import source_create, source_delete, source_modes, source_update

pytestmark = pytest.mark.django_db


@pytest.fixture
def rabbit(admin_user):
    return connection_create(
        actor=admin_user, name="rmq", kind="rabbitmq", url="amqp://127.0.0.1:5672/", password="pw-1"
    )


def test_only_admins_and_the_system_manage_connections_and_sources(rabbit, operator, viewer):
    for user in (operator, viewer):
        with pytest.raises(PermissionDenied):
            connection_create(actor=user, name="x", kind="kafka", url="h:9092")
        with pytest.raises(PermissionDenied):
            connection_update(actor=user, connection=rabbit, url="amqp://other/")
        with pytest.raises(PermissionDenied):
            source_create(actor=user, connection=rabbit, name="s", mode="queue", address="q")
    assert Connection.objects.count() == 1 and not Source.objects.exists()
    source_create(actor=None, connection=rabbit, name="s", mode="queue", address="q")


def test_creating_and_updating_a_connection_is_audited_without_credentials(rabbit, admin_user):
    event = AuditEvent.objects.get(action="connection.create")
    assert event.actor == admin_user and event.detail["password_changed"] is True
    updated = connection_update(actor=admin_user, connection=rabbit, url="amqp://127.0.0.1:5673/", name="rmq")
    assert updated.url.endswith(":5673/") and updated.password == "pw-1"
    assert AuditEvent.objects.get(action="connection.update").detail["changed"] == ["url"]
    connection_update(actor=admin_user, connection=rabbit, password="")
    rabbit.refresh_from_db()
    assert rabbit.password == ""
    last = AuditEvent.objects.filter(action="connection.update").latest("id")
    assert last.detail["changed"] == ["credentials"] and "pw-1" not in str(last.detail)


def test_a_connection_keeps_its_kind_while_it_has_sources(rabbit, admin_user):
    source_create(actor=admin_user, connection=rabbit, name="s", mode="queue", address="q")
    with pytest.raises(ValidationError) as caught:
        connection_update(actor=admin_user, connection=rabbit, kind="kafka")
    assert "kind" in caught.value.message_dict
    assert Connection.objects.get(pk=rabbit.pk).kind == "rabbitmq"


def test_a_source_mode_must_be_one_its_broker_harvests(rabbit, admin_user):
    assert source_modes("rabbitmq") == ("queue",) and source_modes("mqtt") == ()
    with pytest.raises(ValidationError) as caught:
        source_create(actor=admin_user, connection=rabbit, name="s", mode="topic", address="t")
    assert caught.value.message_dict["mode"] == ["a RabbitMQ connection harvests queue sources, not 'topic'"]
    source = source_create(actor=admin_user, connection=rabbit, name="s", mode="queue", address="q")
    kafka = connection_create(actor=admin_user, name="k", kind="kafka", url="h:9092")
    with pytest.raises(ValidationError):
        source_update(actor=admin_user, source=source, connection=kafka)  # queue is not a Kafka mode


def test_a_location_is_a_source_once_per_connection(rabbit, admin_user):
    source_create(actor=admin_user, connection=rabbit, name="first", mode="queue", address="orders.dlq")
    with pytest.raises(ValidationError) as caught:
        source_create(actor=admin_user, connection=rabbit, name="second", mode="queue", address="orders.dlq")
    assert caught.value.message_dict["address"] == [
        "orders.dlq is already a source of this connection (first)"
    ]
    with pytest.raises(ValidationError) as caught:
        source_create(actor=admin_user, connection=rabbit, name="first", mode="queue", address="other.dlq")
    assert "name" in caught.value.message_dict


def test_source_updates_record_what_changed_and_deletes_are_protected(rabbit, admin_user):
    source = source_create(actor=admin_user, connection=rabbit, name="s", mode="queue", address="q")
    source = source_update(actor=admin_user, source=source, enabled=False, max_redrives=2, name="s")
    assert (source.enabled, source.max_redrives) == (False, 2)
    assert AuditEvent.objects.get(action="source.update").detail["changed"] == ["enabled", "max_redrives"]
    with pytest.raises(TypeError):
        source_update(actor=admin_user, source=source, cursor={"x": 1})
    DeadLetter.objects.create(source=source, position="p")
    with pytest.raises(ProtectedError):
        source_delete(actor=admin_user, source=source)
    assert not AuditEvent.objects.filter(action="source.delete").exists()  # rolled back with it
    DeadLetter.objects.all().delete()
    source_delete(actor=admin_user, source=source)
    with pytest.raises(ProtectedError):
        Source.objects.create(connection=rabbit, name="t", mode="queue", address="t")
        connection_delete(actor=admin_user, connection=rabbit)
    assert AuditEvent.objects.filter(action="source.delete").count() == 1


def test_a_source_pointed_elsewhere_starts_from_an_empty_cursor(rabbit, admin_user):
    source = source_create(actor=admin_user, connection=rabbit, name="s", mode="queue", address="q")
    Source.objects.filter(pk=source.pk).update(cursor={"offsets": {"0": 41}})
    source = source_update(actor=admin_user, source=source, enabled=False, max_redrives=3)
    assert source.cursor == {"offsets": {"0": 41}}  # settings only: the harvest position is kept
    source = source_update(actor=admin_user, source=source, address="q2")
    assert Source.objects.get(pk=source.pk).cursor == {}


def test_the_dashboard_and_the_api_write_through_the_same_services(rabbit, admin_user, client):
    """The same source through the dashboard form and the API: same validation message, same
    audit record."""
    from django.urls import reverse

    from tests.api.conftest import token_client

    client.force_login(admin_user)
    form = {"prefix": "m", "m-name": "dash", "m-mode": "queue", "m-address": "a.dlq", "m-max_redrives": "5"}
    assert client.post(reverse("dlq-source-add", args=[rabbit.pk]), form).status_code == 302
    api = token_client(admin_user)
    body = {"name": "api", "connection": rabbit.pk, "mode": "queue", "address": "b.dlq"}
    assert api.post("/api/v1/sources/", body, format="json").status_code == 201
    created = AuditEvent.objects.filter(action="source.create").order_by("id")
    assert [e.detail["name"] for e in created] == ["dash", "api"]
    assert {frozenset(e.detail) for e in created} == {frozenset({"name", "mode", "address"})}
    duplicate = client.post(reverse("dlq-source-add", args=[rabbit.pk]), {**form, "m-name": "dash2"})
    assert b"a.dlq is already a source of this connection (dash)" in duplicate.content
    response = api.post("/api/v1/sources/", {**body, "name": "api2"}, format="json")
    assert response.status_code == 400
