"""Connections and sources: add / edit with write-only credentials, test, discover, enable, harvest."""

import pytest
from django.urls import reverse

from dlqadmin.models import AuditEvent, Connection, DeadLetter, Source
from tests.conftest import AMQP_URL, NATS_URL
from tests.support import rabbit

pytestmark = pytest.mark.django_db


def test_the_list_shows_health_sources_and_never_the_password(as_user, viewer, source):
    body = as_user(viewer).get(reverse("dlq-connections")).content.decode()
    assert "rabbit-main" in body and "orders-dlq" in body and "orders.dlq" in body
    assert "guest-secret-pw" not in body and source.connection.password_encrypted not in body
    assert "Unknown" in body
    assert "Add connection" not in body and "Test connection" not in body and "Harvest now" not in body


def test_an_operator_may_harvest_but_not_manage_connections(as_user, operator, source):
    body = as_user(operator).get(reverse("dlq-connections")).content.decode()
    assert "Harvest now" in body and "Add connection" not in body and "Discover dead letters" not in body


def test_the_empty_state_invites_an_admin_to_add_a_connection(as_user, admin_user, viewer):
    assert b"Add a connection" in as_user(admin_user).get(reverse("dlq-connections")).content
    assert b"An admin adds connections" in as_user(viewer).get(reverse("dlq-connections")).content


def test_an_admin_adds_a_connection_with_an_encrypted_write_only_password(as_user, admin_user):
    client = as_user(admin_user)
    form = client.get(reverse("dlq-connection-add")).content.decode()
    assert 'type="password"' in form and 'autocomplete="new-password"' in form
    response = client.post(
        reverse("dlq-connection-add"),
        {
            "name": "prod-rabbit",
            "kind": "rabbitmq",
            "url": AMQP_URL,
            "username": "guest",
            "new_password": "s3cret-pw",
            "options_json": '{"management_url": "http://127.0.0.1:15672"}',
            "tls_verify": "on",
        },
    )
    assert response.status_code == 302
    connection = Connection.objects.get(name="prod-rabbit")
    assert connection.password == "s3cret-pw" and "s3cret" not in connection.password_encrypted
    assert connection.options == {"management_url": "http://127.0.0.1:15672"}
    edit = client.get(reverse("dlq-connection-edit", args=[connection.pk])).content.decode()
    assert "s3cret-pw" not in edit and connection.password_encrypted not in edit
    assert "A password is stored; leave empty to keep it." in edit
    event = AuditEvent.objects.get(action="connection.create")
    assert event.detail["password_changed"] is True and "s3cret" not in str(event.detail)


def test_editing_without_a_password_keeps_the_stored_one(as_user, admin_user, connection):
    response = as_user(admin_user).post(
        reverse("dlq-connection-edit", args=[connection.pk]),
        {
            "name": "renamed",
            "kind": "rabbitmq",
            "url": AMQP_URL,
            "username": "guest",
            "new_password": "",
            "tls_verify": "on",
        },
    )
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.name == "renamed" and connection.password == "guest-secret-pw"
    as_user(admin_user).post(
        reverse("dlq-connection-edit", args=[connection.pk]),
        {"name": "renamed", "kind": "rabbitmq", "url": AMQP_URL, "clear_password": "on", "tls_verify": "on"},
    )
    connection.refresh_from_db()
    assert connection.password == ""


def test_credentials_in_the_url_and_bad_options_are_refused(as_user, admin_user):
    response = as_user(admin_user).post(
        reverse("dlq-connection-add"),
        {"name": "x", "kind": "rabbitmq", "url": "amqp://user:pw@host:5672/", "options_json": "[1, 2]"},
    )
    body = response.content.decode()
    assert response.status_code == 400
    assert "put credentials in the username and password fields" in body and "must be a JSON object" in body
    assert "amqp://user:pw@host" in body  # the URL is echoed back for fixing; it is what the user typed
    assert not Connection.objects.exists()


def test_option_types_and_ranges_are_form_errors_as_in_the_api(as_user, admin_user, connection, source):
    client = as_user(admin_user)
    response = client.post(
        reverse("dlq-connection-add"),
        {
            "name": "n",
            "kind": "nats",
            "url": "nats://127.0.0.1:4222",
            "options_json": '{"reconnect_time_wait": 1e300}',
        },
    )
    assert response.status_code == 400
    assert "reconnect_time_wait: must be at most 60" in response.content.decode()
    # a prefetch beyond AMQP's 65535 was stored, and "Harvest now" then failed with a 500
    response = client.post(
        reverse("dlq-source-edit", args=[source.pk]),
        {
            "name": source.name,
            "mode": "queue",
            "address": source.address,
            "max_redrives": 3,
            "options_json": '{"prefetch": 1000000000000000000000000000000, "group_id": "g"}',
        },
    )
    body = response.content.decode()
    assert response.status_code == 400
    assert "prefetch: must be at most 65535" in body and "group_id: a topic option, not a queue one" in body
    source.refresh_from_db()
    assert source.options == {}
    # JSON's \u0000 passed the form and failed in PostgreSQL's jsonb (a 500)
    response = client.post(
        reverse("dlq-source-edit", args=[source.pk]),
        {
            "name": source.name,
            "mode": "queue",
            "address": source.address,
            "max_redrives": 3,
            "options_json": '{"group": {"a": "\\u0000"}}',
        },
    )
    assert response.status_code == 400
    assert "options may not contain NUL characters (at group.a)" in response.content.decode()


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_manage_connections(as_user, request, connection, source, role):
    client = as_user(request.getfixturevalue(role))
    assert client.get(reverse("dlq-connection-add")).status_code == 403
    assert client.post(reverse("dlq-connection-edit", args=[connection.pk]), {"name": "x"}).status_code == 403
    assert client.post(reverse("dlq-connection-test", args=[connection.pk])).status_code == 403
    assert client.get(reverse("dlq-connection-discover", args=[connection.pk])).status_code == 403
    assert client.post(reverse("dlq-source-add", args=[connection.pk]), {"name": "y"}).status_code == 403
    assert client.get(reverse("dlq-source-edit", args=[source.pk])).status_code == 403


def test_testing_a_reachable_broker_records_its_health(as_user, admin_user, connection):
    connection.set_password("guest")
    connection.save()
    response = as_user(admin_user).post(
        reverse("dlq-connection-test", args=[connection.pk]), HTTP_HX_REQUEST="true"
    )
    connection.refresh_from_db()
    assert connection.health_status == "ok" and connection.server_version
    assert response.status_code == 200 and b"h-ok" in response.content and b"<html" not in response.content


def test_testing_an_unreachable_broker_shows_the_error(as_user, admin_user):
    from dlqadmin.services.connections import connection_create

    dead = connection_create(name="dead", kind="rabbitmq", url="amqp://127.0.0.1:1/")
    response = as_user(admin_user).post(reverse("dlq-connection-test", args=[dead.pk]), follow=True)
    dead.refresh_from_db()
    assert dead.health_status == "error"
    assert b"flash-error" in response.content and b"Unreachable" in response.content


@pytest.fixture
def topology():
    made = []

    def make(count):
        top = rabbit.dead_letter(count)
        made.append(top)
        return top

    yield make
    for top in made:
        rabbit.delete(top)


def test_discovery_finds_a_real_dead_letter_queue_and_enables_it(as_user, admin_user, connection, topology):
    top = topology(2)
    connection.set_password("guest")
    connection.save()
    client = as_user(admin_user)
    body = client.get(reverse("dlq-connection-discover", args=[connection.pk])).content.decode()
    assert top.dlq in body
    prefix = body.split(top.dlq, 1)[1].split('name="prefix" value="', 1)[1].split('"', 1)[0]
    response = client.post(
        reverse("dlq-source-add", args=[connection.pk]),
        {
            "prefix": prefix,
            f"{prefix}-name": top.dlq,
            f"{prefix}-mode": "queue",
            f"{prefix}-address": top.dlq,
            f"{prefix}-max_redrives": "5",
            f"{prefix}-enabled": "on",
            f"{prefix}-remove_after_harvest": "on",
        },
    )
    assert response.status_code == 302
    source = Source.objects.get(name=top.dlq)
    assert (source.connection_id, source.mode, source.address, source.enabled) == (
        connection.pk,
        "queue",
        top.dlq,
        True,
    )
    assert AuditEvent.objects.filter(action="source.create", target_id=str(source.pk)).exists()
    again = client.get(reverse("dlq-connection-discover", args=[connection.pk])).content.decode()
    assert "already a source" in again


def test_discovery_on_an_unreachable_broker_explains(as_user, admin_user):
    from dlqadmin.services.connections import connection_create

    dead = connection_create(
        name="dead",
        kind="rabbitmq",
        url="amqp://127.0.0.1:1/",
        options={"management_url": "http://127.0.0.1:2/"},
    )
    response = as_user(admin_user).get(reverse("dlq-connection-discover", args=[dead.pk]))
    assert response.status_code == 502 and b"The broker could not be asked" in response.content


def test_a_duplicate_source_location_is_refused(as_user, admin_user, connection, source):
    response = as_user(admin_user).post(
        reverse("dlq-source-add", args=[connection.pk]),
        {
            "prefix": "m",
            "m-name": "again",
            "m-mode": "queue",
            "m-address": "orders.dlq",
            "m-max_redrives": "5",
        },
    )
    assert response.status_code == 400 and b"already a source of this connection" in response.content


def test_editing_a_source_disables_it(as_user, admin_user, source):
    client = as_user(admin_user)
    assert client.get(reverse("dlq-source-edit", args=[source.pk])).status_code == 200
    response = client.post(
        reverse("dlq-source-edit", args=[source.pk]),
        {
            "name": source.name,
            "mode": "queue",
            "address": source.address,
            "max_redrives": "2",
            "options_json": "{}",
        },
    )
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.enabled is False and source.max_redrives == 2


def test_harvest_now_stores_real_dead_letters(as_user, operator, connection, topology):
    top = topology(3)
    connection.set_password("guest")
    connection.save()
    source = Source.objects.create(connection=connection, name=top.dlq, mode="queue", address=top.dlq)
    response = as_user(operator).post(reverse("dlq-source-harvest", args=[source.pk]), follow=True)
    assert b"3 new, 0 already stored" in response.content
    assert DeadLetter.objects.filter(source=source).count() == 3
    assert AuditEvent.objects.filter(action="source.harvest", count=3).exists()


def test_a_viewer_cannot_harvest(as_user, viewer, source):
    assert as_user(viewer).post(reverse("dlq-source-harvest", args=[source.pk])).status_code == 403


@pytest.mark.parametrize(
    ("kind", "url", "mode", "tls", "message"),
    [
        (
            "rabbitmq",
            AMQP_URL,
            "queue",
            {"tls_ca_cert": "not a certificate"},
            "the TLS CA certificate could not",
        ),
        (
            "nats",
            NATS_URL,
            "dlq_stream",
            {"tls_ca_cert": "not a certificate"},
            "the TLS CA certificate could not",
        ),
        (
            "nats",
            NATS_URL,
            "dlq_stream",
            {"tls_client_cert": "x", "new_tls_client_key": "y"},
            "client certificate",
        ),
    ],
)
def test_tls_material_that_cannot_be_read_is_explained_not_a_500(
    as_user, admin_user, kind, url, mode, tls, message
):
    # ssl raised SSLError from inside the adapter: "Harvest now" and discovery answered 500
    client = as_user(admin_user)
    form = {
        "name": "c",
        "kind": kind,
        "url": url,
        "tls_enabled": "on",
        "tls_verify": "on",
        "options_json": "{}",
        **tls,
    }
    assert client.post(reverse("dlq-connection-add"), form).status_code == 302
    connection = Connection.objects.get(name="c")
    source = Source.objects.create(connection=connection, name="s", mode=mode, address="a")
    discover = client.get(reverse("dlq-connection-discover", args=[connection.pk]))
    assert discover.status_code == 502 and message in discover.content.decode()
    harvest = client.post(reverse("dlq-source-harvest", args=[source.pk]), follow=True)
    assert harvest.status_code == 200 and message in harvest.content.decode()
    client.post(reverse("dlq-connection-test", args=[connection.pk]))
    connection.refresh_from_db()
    assert connection.health_status == "error" and message in connection.last_error
